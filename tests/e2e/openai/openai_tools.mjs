// Tools and structured outputs through the stock `openai` npm package, on a random-weight model
// whose GGUF carries a tools-aware chat template (tools_template.jinja): its free text is
// noise, so every call and every JSON document below exists only because rbee constrained the
// decoding. Schemas are checked with Ajv. Run by openai_sdk_test.cpp.
// Environment: RBEE_OPENAI_BASE_URL, RBEE_OPENAI_KEY, RBEE_MODEL, RBEE_TEXT_MODEL (stories260K).
import OpenAI from 'openai';
import Ajv from 'ajv';
import assert from 'node:assert/strict';

const client = new OpenAI({
  baseURL: process.env.RBEE_OPENAI_BASE_URL, apiKey: process.env.RBEE_OPENAI_KEY, maxRetries: 0,
});
const model = process.env.RBEE_MODEL;
const ajv = new Ajv({ strict: false });

const weatherParameters = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 12 },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const tools = [{
  type: 'function',
  function: { name: 'get_weather', description: 'Current weather in a city', parameters: weatherParameters },
}];
const question = [{ role: 'user', content: 'What is the weather in Paris?' }];

// tool_choice "required": the reply is a call of an offered function, with valid arguments.
const first = await client.chat.completions.create({
  model, messages: question, tools, tool_choice: 'required', max_tokens: 200, temperature: 0,
});
const call = first.choices[0].message.tool_calls?.[0];
assert.ok(call, `no tool call in ${JSON.stringify(first.choices[0])}`);
assert.equal(first.choices[0].finish_reason, 'tool_calls');
assert.equal(call.type, 'function');
assert.equal(call.function.name, 'get_weather');
assert.match(call.id, /^call_/);
const args = JSON.parse(call.function.arguments);
assert.ok(ajv.validate(weatherParameters, args), ajv.errorsText());

// The tool's result goes back; the next turn renders the call and the result into the prompt.
const followUp = [
  ...question,
  first.choices[0].message,
  { role: 'tool', tool_call_id: call.id, content: 'Sunny, 22 degrees and a light breeze from the west' },
];
const second = await client.chat.completions.create({
  model, messages: followUp, tools, tool_choice: 'none', max_tokens: 4, temperature: 0,
});
assert.equal(second.choices[0].message.tool_calls, undefined);
assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens + 20,
  `the call and its result are in the prompt (${first.usage.prompt_tokens} -> ${second.usage.prompt_tokens})`);

// A named function: its arguments, always.
const named = await client.chat.completions.create({
  model, messages: question, tools, max_tokens: 200, temperature: 0,
  tool_choice: { type: 'function', function: { name: 'get_weather' } },
});
const namedCall = named.choices[0].message.tool_calls[0];
assert.equal(namedCall.function.name, 'get_weather');
assert.ok(ajv.validate(weatherParameters, JSON.parse(namedCall.function.arguments)), ajv.errorsText());

// Streamed: the calls arrive as delta.tool_calls, numbered by index.
const stream = await client.chat.completions.create({
  model, messages: question, tools, tool_choice: 'required', max_tokens: 200, stream: true,
  temperature: 0,
});
const streamed = [];
let streamedFinish = null;
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  for (const delta of choice?.delta?.tool_calls ?? []) {
    const call = (streamed[delta.index] ??= { name: '', args: '' });
    call.name += delta.function?.name ?? '';
    call.args += delta.function?.arguments ?? '';
  }
  if (choice?.finish_reason) streamedFinish = choice.finish_reason;
}
assert.ok(streamed.length >= 1);
for (const call of streamed) {
  assert.equal(call.name, 'get_weather');
  assert.ok(ajv.validate(weatherParameters, JSON.parse(call.args)), ajv.errorsText());
}
assert.equal(streamedFinish, 'tool_calls');

// parallel_tool_calls: false allows exactly one call.
const single = await client.chat.completions.create({
  model, messages: question, tools, tool_choice: 'required', parallel_tool_calls: false,
  max_tokens: 200, temperature: 1, seed: 11,
});
assert.equal(single.choices[0].message.tool_calls.length, 1);

// response_format json_schema: the content parses and validates.
const person = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer' },
    pets: { type: 'array', items: { type: 'string', enum: ['cat', 'dog'] }, maxItems: 3 },
    member: { type: 'boolean' },
  },
  required: ['name', 'age', 'pets', 'member'],
  additionalProperties: false,
};
for (const seed of [1, 2, 3]) {
  const structured = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Describe a person.' }], max_tokens: 200,
    temperature: 1, seed,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
  });
  const doc = JSON.parse(structured.choices[0].message.content);
  assert.ok(ajv.validate(person, doc), `${ajv.errorsText()} in ${JSON.stringify(doc)}`);
  assert.equal(structured.choices[0].finish_reason, 'stop');
}

// json_object: any JSON object. Its strings are free, which an untrained model may never
// close: a reply cut by max_tokens is still the start of an object.
const object = await client.chat.completions.create({
  model: process.env.RBEE_TEXT_MODEL, messages: question, response_format: { type: 'json_object' },
  temperature: 0, max_tokens: 64,
});
const objectText = object.choices[0].message.content;
if (object.choices[0].finish_reason === 'stop') {
  const parsed = JSON.parse(objectText);
  assert.ok(typeof parsed === 'object' && !Array.isArray(parsed) && parsed !== null);
} else {
  assert.equal(object.choices[0].finish_reason, 'length');
  assert.match(objectText, /^\{\s*("|\})/);
}

// A schema rbee cannot enforce is refused by name, not ignored.
await assert.rejects(
  client.chat.completions.create({
    model, messages: question,
    response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', not: {} } } },
  }),
  (e) => e.status === 400);
await assert.rejects(
  client.chat.completions.create({
    model, messages: question, tools, tool_choice: { type: 'function', function: { name: 'nope' } },
  }),
  (e) => e.status === 400 && e.param === 'tool_choice');

console.log('all checks passed');
