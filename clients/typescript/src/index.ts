// The chat area of tokenwire's contract: messages, enums and the Connect service descriptors
// of ChatService and ModelService. Other areas: "@tokenwire/api/gen/tokenwire/<area>/v1/<file>_pb".
export * from "./gen/tokenwire/chat/v1/chat_pb.js";
export * from "./gen/tokenwire/chat/v1/message_pb.js";
export * from "./gen/tokenwire/chat/v1/models_pb.js";
export * from "./gen/tokenwire/chat/v1/routing_pb.js";
