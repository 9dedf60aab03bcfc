// Drives queen-rbee's OpenAI-compatible API with the stock `openai` npm package: peer defaults
// (temperature 0 is llama.cpp's greedy text), streaming details, logprobs, n > 1, the model
// endpoints, CORS and errors. Run by openai_sdk_test.cpp.
// Environment: RBEE_OPENAI_BASE_URL, RBEE_OPENAI_KEY, RBEE_MODEL, RBEE_GOLDEN (greedy text),
// RBEE_CHAT_GOLDEN (golden-chat-stories260K.json: llama-server's greedy chat answers),
// RBEE_CHATML_MODEL (stories260K shipping the ChatML template).
import OpenAI from 'openai';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const baseURL = process.env.RBEE_OPENAI_BASE_URL;
const apiKey = process.env.RBEE_OPENAI_KEY;
const model = process.env.RBEE_MODEL;
const golden = process.env.RBEE_GOLDEN;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const messages = [{ role: 'user', content: 'Once upon a time' }];

// Completions: greedy output is llama.cpp's, with no hidden penalty.
const completion = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0,
});
assert.equal(completion.object, 'text_completion');
assert.equal(completion.choices[0].text, golden.slice(0, completion.choices[0].text.length));
assert.ok(completion.choices[0].text.length > 20);
assert.equal(completion.usage.completion_tokens, 24);
assert.ok(completion.created > 1700000000, 'created is a real Unix time');
assert.match(completion.system_fingerprint, /^rbee-/);

// No max_tokens: the answer runs to EOS or the end of the context, not to a hidden cap.
const unbounded = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0 });
assert.ok(unbounded.choices[0].text.startsWith(completion.choices[0].text));
assert.ok(unbounded.choices[0].finish_reason === 'stop' || unbounded.usage.completion_tokens > 256,
  `stopped at ${unbounded.usage.completion_tokens} tokens (${unbounded.choices[0].finish_reason})`);

// Chat: greedy answers are llama-server's (b4748) for the same messages, prompt tokens included
// (its built-in ChatML template for a model without one).
// The same model shipping the ChatML template (rendered by rbee's Jinja engine) answers alike.
const chatGolden = JSON.parse(readFileSync(process.env.RBEE_CHAT_GOLDEN, 'utf8'));
for (const chatModel of [model, process.env.RBEE_CHATML_MODEL]) {
  for (const c of chatGolden.cases) {
    const answer = await client.chat.completions.create({
      model: chatModel, messages: c.messages, max_tokens: c.max_tokens, temperature: 0,
    });
    assert.equal(answer.choices[0].message.content, c.content, chatModel);
    assert.equal(answer.choices[0].finish_reason, c.finish_reason);
    assert.equal(answer.usage.prompt_tokens, c.usage.prompt_tokens, chatModel);
  }
}

// Chat, not streamed: usage and finish_reason.
const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(chat.choices[0].finish_reason, 'length');
assert.equal(chat.usage.completion_tokens, 8);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);

// Chat, streamed: same text; the usage comes in its own chunk with no choices, last.
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = '';
let finish = null;
const chunks = [];
for await (const chunk of stream) {
  chunks.push(chunk);
  assert.equal(chunk.object, 'chat.completion.chunk');
  const choice = chunk.choices[0];
  if (choice?.delta?.content) text += choice.delta.content;
  if (choice?.finish_reason) finish = choice.finish_reason;
}
assert.ok(chunks.length >= 3, `expected several chunks, got ${chunks.length}`);
assert.equal(text, chat.choices[0].message.content);
assert.equal(finish, 'length');
const last = chunks[chunks.length - 1];
assert.deepEqual(last.choices, []);
assert.equal(last.usage.completion_tokens, 8);
assert.ok(chunks.slice(0, -1).every((c) => !c.usage), 'only the last chunk has usage');

// A stop string ends the text before it, with finish_reason "stop".
const stopped = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 64, temperature: 0, stop: ['Lily'],
});
assert.equal(stopped.choices[0].finish_reason, 'stop');
assert.equal(stopped.choices[0].text, golden.slice(0, golden.indexOf('Lily')));

// Logprobs: greedy picks the most likely token, so it heads its own top list; the tokens
// spell the text.
const withLogprobs = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 3,
});
const lp = withLogprobs.choices[0].logprobs;
assert.equal(lp.tokens.length, 6);
assert.equal(lp.tokens.join(''), withLogprobs.choices[0].text);
lp.token_logprobs.forEach((value, i) => {
  assert.ok(value <= 0, 'a log probability');
  const top = Object.entries(lp.top_logprobs[i]);
  assert.equal(top.length, 3);
  const best = Math.max(...top.map(([, v]) => v));
  assert.ok(Math.abs(best - value) < 1e-4, `greedy token ${i} is the most likely one`);
});
const chatLogprobs = await client.chat.completions.create({
  model, messages, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2,
});
const content = chatLogprobs.choices[0].logprobs.content;
assert.equal(content.length, 5);
assert.equal(content.map((t) => t.token).join(''), chatLogprobs.choices[0].message.content);
for (const t of content) {
  assert.equal(t.top_logprobs.length, 2);
  assert.equal(t.top_logprobs[0].token, t.token);
  assert.deepEqual(Buffer.from(t.bytes).toString('utf8'), t.token);
}

// n > 1: several choices from one request; seeded choices are reproducible.
const sampled = { model, prompt: 'Once upon a time', max_tokens: 12, temperature: 1, seed: 7, n: 2 };
const first = await client.completions.create(sampled);
const again = await client.completions.create(sampled);
assert.equal(first.choices.length, 2);
assert.deepEqual(first.choices.map((c) => c.index), [0, 1]);
assert.deepEqual(again.choices.map((c) => c.text), first.choices.map((c) => c.text));
assert.notEqual(first.choices[0].text, first.choices[1].text, 'choices are sampled apart');
assert.equal(first.usage.completion_tokens, 24);

// Penalties as OpenAI defines them change sampling: the golden text repeats "play", and a
// penalized greedy answer does not.
const penalized = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 64, temperature: 0, frequency_penalty: 2,
  presence_penalty: 2,
});
assert.notEqual(penalized.choices[0].text, golden);
assert.ok(penalized.choices[0].text.split(' play ').length <= 2, penalized.choices[0].text);

// The model endpoints: the list and each model by its id (ids hold '/' and ':').
const models = await client.models.list();
const ids = models.data.map((m) => m.id);
assert.ok(ids.includes(model), `${model} in ${ids}`);
const one = await client.models.retrieve(model);
assert.equal(one.id, model);
await assert.rejects(client.models.retrieve('hf:nobody/nothing'), (e) => e.status === 404);

// Unsupported parameters are refused with a 400 that names them, never ignored.
await assert.rejects(
  client.chat.completions.create({ model, messages, audio: { voice: 'alloy', format: 'wav' } }),
  (e) => e.status === 400 && e.param === 'audio');
await assert.rejects(
  client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }],
  }),
  (e) => e.status === 400 && /image_url/.test(e.message));

// Browsers: a CORS preflight is answered and answers allow any origin.
const preflight = await fetch(`${baseURL}/chat/completions`, {
  method: 'OPTIONS',
  headers: {
    Origin: 'http://app.example',
    'Access-Control-Request-Method': 'POST',
    'Access-Control-Request-Headers': 'authorization, content-type',
  },
});
assert.equal(preflight.status, 204);
assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
assert.match(preflight.headers.get('access-control-allow-headers'), /authorization/i);
const listed = await fetch(`${baseURL}/models`, {
  headers: { Origin: 'http://app.example', Authorization: `Bearer ${apiKey}` },
});
assert.equal(listed.headers.get('access-control-allow-origin'), '*');

console.log('all checks passed');
