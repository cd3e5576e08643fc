#!/usr/bin/env node
// One normal and one streamed chat call through the AILink gateway with the
// official Node "openai" client; prints a JSON summary on stdout.
//
//   npm ci --prefix t/e2e
//   node t/e2e/openai_node.mjs --base-url http://127.0.0.1:8080/v1 --token ailink_v1_...
//        [--model gpt-4o-mini] [--prompt "Hello"] [--events 4] [--bad-token T]
//        [--tools] [--reasoning]
//
// --base-url and --token default to $AILINK_BASE_URL and $AILINK_TOKEN.
// --events sends X-Mock-Events (the mock provider's number of content chunks)
// with the streamed call.  With --bad-token, a third call with that token must
// fail, and its error is reported as "auth_error".  With --tools, a tool-call
// round trip (the mock answers with a call, the script sends the tool's
// result back) and a message with an image follow, reported as "tool_call",
// "tool_answer" and "image_answer".  With --reasoning, a tool-use round trip
// with reasoning_effort (the assistant message goes back as the client got
// it, thinking_blocks included), the same from a stream (reasoning_content
// deltas and the signature delta make the block), and structured outputs
// (response_format json_schema, JSON and streamed), reported as "reasoning".
//
// Output: {"content", "streamed", "chunks", "content_chunks", "usage",
//          "stream_usage", "request_id", "auth_error", "tool_call",
//          "tool_answer", "image_answer"}
// Exit status 1 (message on stderr) when a call fails unexpectedly.

import { parseArgs } from "node:util";
import OpenAI from "openai";

const { values: opt } = parseArgs({
  options: {
    "base-url": { type: "string", default: process.env.AILINK_BASE_URL },
    token: { type: "string", default: process.env.AILINK_TOKEN },
    model: { type: "string", default: "gpt-4o-mini" },
    prompt: { type: "string", default: "Hello from Node" },
    events: { type: "string" },
    "bad-token": { type: "string" },
    tools: { type: "boolean", default: false },
    reasoning: { type: "boolean", default: false },
  },
});

const TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];

// a 1x1 PNG
const PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII=";

async function toolsAndImage() {
  const history = [{ role: "user", content: "What is the weather in Paris?" }];
  const first = await client.chat.completions.create(
    { model: opt.model, messages: history, tools: TOOLS },
    { headers: { "X-Mock-Scenario": "tool_call" } },
  );
  const message = first.choices[0].message;
  const call = message.tool_calls[0];

  history.push(message);
  history.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature_c: 18 }) });

  const second = await client.chat.completions.create({ model: opt.model, messages: history, tools: TOOLS });

  const image = await client.chat.completions.create({
    model: opt.model,
    messages: [{
      role: "user",
      content: [
        { type: "text", text: "What is in this image?" },
        { type: "image_url", image_url: { url: `data:image/png;base64,${PIXEL}` } },
      ],
    }],
  });

  return {
    tool_call: {
      finish_reason: first.choices[0].finish_reason,
      name: call.function.name,
      arguments: JSON.parse(call.function.arguments),
    },
    tool_answer: second.choices[0].message.content,
    image_answer: image.choices[0].message.content,
  };
}

const SCHEMA = {
  type: "object",
  properties: { city: { type: "string" }, temperature_c: { type: "number" } },
  required: ["city", "temperature_c"],
  additionalProperties: false,
};

async function reasoning() {
  const out = {};
  const ask = [{ role: "user", content: "Weather in Paris?" }];

  // JSON: the message goes back as it came
  const first = await client.chat.completions.create(
    { model: opt.model, messages: ask, tools: TOOLS, reasoning_effort: "low" },
    { headers: { "X-Mock-Scenario": "tool_call" } },
  );
  const message = first.choices[0].message;
  out.reasoning_content = message.reasoning_content ?? null;
  out.thinking_blocks = (message.thinking_blocks ?? []).map((b) => b.type);
  out.reasoning_tokens = first.usage?.completion_tokens_details?.reasoning_tokens ?? null;
  const second = await client.chat.completions.create({
    model: opt.model, tools: TOOLS, reasoning_effort: "low",
    messages: [...ask, message,
      { role: "tool", tool_call_id: message.tool_calls[0].id, content: "sunny" }],
  });
  out.round_trip = second.choices[0].finish_reason;

  // a stream: reasoning_content deltas, the signature, the tool call
  const stream = await client.chat.completions.create(
    { model: opt.model, messages: ask, tools: TOOLS, reasoning_effort: "low", stream: true },
    { headers: { "X-Mock-Scenario": "tool_call" } },
  );
  let thinking = "";
  let content = "";
  const blocks = [];
  const call = { id: null, name: null, arguments: "" };
  for await (const chunk of stream) {
    const d = chunk.choices?.[0]?.delta ?? {};
    thinking += d.reasoning_content ?? "";
    content += d.content ?? "";
    for (const b of d.thinking_blocks ?? []) blocks.push(b);
    for (const tc of d.tool_calls ?? []) {
      call.id = tc.id ?? call.id;
      call.name = tc.function?.name ?? call.name;
      call.arguments += tc.function?.arguments ?? "";
    }
  }
  out.streamed_reasoning = thinking;
  const third = await client.chat.completions.create({
    model: opt.model, tools: TOOLS, reasoning_effort: "low",
    messages: [...ask,
      { role: "assistant", content, reasoning_content: thinking, thinking_blocks: blocks,
        tool_calls: [{ id: call.id, type: "function",
                       function: { name: call.name, arguments: call.arguments } }] },
      { role: "tool", tool_call_id: call.id, content: "sunny" }],
  });
  out.stream_round_trip = third.choices[0].finish_reason;

  // structured outputs
  const rf = { type: "json_schema", json_schema: { name: "weather", strict: true, schema: SCHEMA } };
  const structured = await client.chat.completions.create({
    model: opt.model, response_format: rf,
    messages: [{ role: "user", content: "Weather in Paris as JSON" }],
  });
  out.structured = JSON.parse(structured.choices[0].message.content);
  out.structured_finish = structured.choices[0].finish_reason;
  const sstream = await client.chat.completions.create({
    model: opt.model, response_format: rf, stream: true,
    messages: [{ role: "user", content: "Weather in Paris as JSON" }],
  });
  let json = "";
  for await (const chunk of sstream) json += chunk.choices?.[0]?.delta?.content ?? "";
  out.structured_streamed = JSON.parse(json);
  return { reasoning: out };
}

if (!opt["base-url"] || !opt.token) {
  console.error("usage: openai_node.mjs --base-url URL --token TOKEN (or AILINK_BASE_URL, AILINK_TOKEN)");
  process.exit(2);
}

const clientOptions = { baseURL: opt["base-url"], maxRetries: 0, timeout: 10_000 };
const client = new OpenAI({ ...clientOptions, apiKey: opt.token });
const messages = [{ role: "user", content: opt.prompt }];

async function main() {
  const { data: completion, response } = await client.chat.completions
    .create({ model: opt.model, messages })
    .withResponse();

  const stream = await client.chat.completions.create(
    { model: opt.model, messages, stream: true, stream_options: { include_usage: true } },
    opt.events ? { headers: { "X-Mock-Events": opt.events } } : undefined,
  );
  let streamed = "";
  let chunks = 0;
  let contentChunks = 0;
  let streamUsage = null;
  for await (const chunk of stream) {
    chunks += 1;
    const delta = chunk.choices?.[0]?.delta?.content;
    if (delta) {
      streamed += delta;
      contentChunks += 1;
    }
    if (chunk.usage) streamUsage = chunk.usage;
  }

  let authError = null;
  if (opt["bad-token"]) {
    const bad = new OpenAI({ ...clientOptions, apiKey: opt["bad-token"] });
    try {
      await bad.chat.completions.create({ model: opt.model, messages });
      throw new Error("the call with --bad-token succeeded");
    } catch (e) {
      if (!(e instanceof OpenAI.APIError)) throw e;
      authError = {
        class: e.constructor.name,
        status: e.status,
        code: e.code ?? null,
        message: e.error?.message ?? null,
        request_id: e.headers?.get("x-ailink-request-id") ?? null,
      };
    }
  }

  const extra = {
    ...(opt.tools ? await toolsAndImage() : {}),
    ...(opt.reasoning ? await reasoning() : {}),
  };

  return {
    ...extra,
    content: completion.choices[0].message.content,
    streamed,
    chunks,
    content_chunks: contentChunks,
    usage: completion.usage ?? null,
    stream_usage: streamUsage,
    request_id: response.headers.get("x-ailink-request-id"),
    auth_error: authError,
  };
}

main().then(
  (summary) => process.stdout.write(JSON.stringify(summary) + "\n"),
  (err) => {
    console.error(`openai_node.mjs: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
