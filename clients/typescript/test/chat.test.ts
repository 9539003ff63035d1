// The generated TypeScript client against a real tokenwire: a streamed chat over gRPC through
// Connect's Node gRPC transport, and a REST call through the official openai SDK.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import OpenAI from "openai";

import {
  ChatMessageSchema,
  ChatService,
  CreateChatCompletionRequestSchema,
  FinishReason,
  ModelService,
  Role,
} from "../src/index.js";
import { serve, stop, type Serving } from "./serving.js";

let serving: Serving | undefined;

before(async () => {
  serving = await serve();
});

after(async () => {
  if (serving) assert.equal(await stop(serving), 0);
});

function started(): Serving {
  assert.ok(serving, "tokenwire did not start");
  return serving;
}

function grpc() {
  return createGrpcTransport({ baseUrl: `http://127.0.0.1:${started().grpcPort}` });
}

test("a chat streams over gRPC, chunk by chunk, to a stop", async () => {
  const chat = createClient(ChatService, grpc());
  const request = create(CreateChatCompletionRequestSchema, {
    model: "fake-echo",
    messages: [
      create(ChatMessageSchema, {
        role: Role.USER,
        content: { case: "contentText", value: "streamed over grpc" },
      }),
    ],
  });
  const deltas: string[] = [];
  const finishes: FinishReason[] = [];
  for await (const response of chat.streamChatCompletion({ request })) {
    for (const choice of response.chunk?.choices ?? []) {
      deltas.push(choice.delta?.content ?? "");
      finishes.push(choice.finishReason);
    }
  }
  assert.equal(deltas.join(""), "streamed over grpc ");
  assert.ok(deltas.filter((d) => d !== "").length >= 3, "one chunk per word");
  // UNSPECIFIED (unset) on every chunk but the last
  assert.deepEqual(new Set(finishes.slice(0, -1)), new Set([FinishReason.UNSPECIFIED]));
  assert.equal(finishes.at(-1), FinishReason.STOP);
});

test("the model list comes back over gRPC", async () => {
  const models = createClient(ModelService, grpc());
  const listed = await models.listModels({});
  assert.deepEqual(
    listed.data.map((m) => m.id),
    ["fake-echo"],
  );
});

test("the official openai SDK completes a chat through the REST gateway", async () => {
  const openai = new OpenAI({
    baseURL: `http://127.0.0.1:${started().httpPort}/v1`,
    apiKey: "unused-locally",
    maxRetries: 0,
  });
  const answer = await openai.chat.completions.create({
    model: "fake-echo",
    messages: [{ role: "user", content: "hello over rest" }],
  });
  assert.equal(answer.object, "chat.completion");
  assert.equal(answer.choices[0].message.content, "hello over rest ");
  assert.equal(answer.choices[0].finish_reason, "stop");
});
