"""Agents: stored definitions run as server-side tool loops behind `model: "agent/<name>"`.

store      AgentStore: versioned definitions per organization
validate   what a definition must be before it is stored
service    AgentServicer (gRPC and REST)
dispatch   AgentDispatch: the chat servicer's pipeline, running `agent/<name>` as a loop
loop       AgentLoop: model call ▶ tool calls ▶ results ▶ next model call
steps      one model call through the chat pipeline, unary or streamed
guard      LoopGuard: max_steps, max_tool_calls, timeout, budget, repeated calls
tools/     builtins, calculator, http_fetch and its ssrf guard, mcp, the toolbox
sessions/  recorder, store, replay, service
"""
