// A second real client: the Vercel AI SDK with its OpenAI-compatible provider, streaming a
// tool call end to end against queen-rbee (the random-weight tools model of openai_tools.mjs).
// Environment: RBEE_OPENAI_BASE_URL, RBEE_OPENAI_KEY, RBEE_MODEL.
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { streamText, tool } from 'ai';
import { z } from 'zod';
import assert from 'node:assert/strict';

const rbee = createOpenAICompatible({
  name: 'rbee',
  baseURL: process.env.RBEE_OPENAI_BASE_URL,
  apiKey: process.env.RBEE_OPENAI_KEY,
  includeUsage: true,
});

const weather = z.object({ city: z.string().max(12), unit: z.enum(['celsius', 'fahrenheit']) });
const result = streamText({
  model: rbee(process.env.RBEE_MODEL),
  prompt: 'What is the weather in Paris?',
  tools: { get_weather: tool({ description: 'Current weather in a city', inputSchema: weather }) },
  toolChoice: 'required',
  maxOutputTokens: 200,
  temperature: 0,
  maxRetries: 0,
});

const calls = [];
const kinds = new Set();
let finish = null;
for await (const part of result.fullStream) {
  kinds.add(part.type);
  if (part.type === 'error') throw part.error;
  if (part.type === 'tool-call') calls.push(part);
  if (part.type === 'finish') finish = part.finishReason;
}
assert.equal(calls.length, 1, `tool calls: ${JSON.stringify(calls)}; parts: ${[...kinds]}`);
assert.equal(calls[0].toolName, 'get_weather');
assert.ok(weather.safeParse(calls[0].input).success, JSON.stringify(calls[0].input));
assert.equal(finish, 'tool-calls');
const usage = await result.usage;
assert.ok(usage.outputTokens > 0, JSON.stringify(usage));

console.log('all checks passed');
