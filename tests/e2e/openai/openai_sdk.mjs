// Drives queen-rbee's OpenAI-compatible API with the stock `openai` npm package.
// Run by openai_sdk_test.cpp from a temp dir where `npm install openai` put the package.
// Environment: RBEE_OPENAI_BASE_URL, RBEE_OPENAI_KEY, RBEE_MODEL, RBEE_GOLDEN (greedy text).
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const baseURL = process.env.RBEE_OPENAI_BASE_URL;
const apiKey = process.env.RBEE_OPENAI_KEY;
const model = process.env.RBEE_MODEL;
const golden = process.env.RBEE_GOLDEN;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const messages = [{ role: 'user', content: 'Once upon a time' }];

// Chat, not streamed: usage and finish_reason.
const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(chat.choices[0].finish_reason, 'length');
assert.equal(chat.usage.completion_tokens, 8);
assert.ok(chat.usage.prompt_tokens > 0);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);

// Chat, streamed: same text, a finish_reason and usage in the last chunk.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = '';
let finish = null;
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks++;
  assert.equal(chunk.object, 'chat.completion.chunk');
  const choice = chunk.choices[0];
  if (choice?.delta?.content) text += choice.delta.content;
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
}
assert.ok(chunks >= 2, `expected several chunks, got ${chunks}`);
assert.equal(text, chat.choices[0].message.content);
assert.equal(finish, 'length');
assert.equal(usage?.completion_tokens, 8);

// Completions: greedy output is llama.cpp's.
const completion = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 12, temperature: 0, seed: 1,
});
assert.equal(completion.object, 'text_completion');
assert.ok(golden.startsWith(completion.choices[0].text),
  `greedy text ${JSON.stringify(completion.choices[0].text)} is not a prefix of the golden text`);
assert.equal(completion.usage.completion_tokens, 12);

// A stop string ends the text before it, with finish_reason "stop".
const stopped = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 64, temperature: 0, stop: ['.'],
});
assert.equal(stopped.choices[0].finish_reason, 'stop');
assert.ok(!stopped.choices[0].text.includes('.'));

// Models: the loaded one is listed.
const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === model), JSON.stringify(models.data));

// A wrong key raises the SDK's AuthenticationError.
const wrong = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
await assert.rejects(
  wrong.chat.completions.create({ model, messages, max_tokens: 4 }),
  (e) => e instanceof OpenAI.AuthenticationError && e.status === 401,
);

console.log('openai sdk: all checks passed');
