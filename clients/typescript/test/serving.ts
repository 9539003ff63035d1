// `tokenwire serve` as a child process with the fake provider, on ports the OS picks: the
// ports are read from its start-up line, as tests/serving.py does for the Python tests.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const ANNOUNCE = /gRPC on 127\.0\.0\.1:(\d+), HTTP on http:\/\/127\.0\.0\.1:(\d+)\/v1/;
const START_MS = 60_000;

export interface Serving {
  process: ChildProcess;
  grpcPort: number;
  httpPort: number;
}

/** Starts this checkout's server (TOKENWIRE_PYTHON, else .venv's python) on ports 0. */
export async function serve(): Promise<Serving> {
  const python = process.env.TOKENWIRE_PYTHON ?? resolve(ROOT, ".venv/bin/python");
  const args = [
    "-m", "server", "serve", "--provider", "fake", "--http-port", "0", "--grpc-port", "0",
    "--log-level", "warning", "--database-url", "sqlite://:memory:",
  ];
  // This checkout's server and stubs, even where the venv holds another editable install.
  const pythonPath = [ROOT, resolve(ROOT, "clients/python"), process.env.PYTHONPATH ?? ""];
  const child = spawn(python, args, {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: pythonPath.join(":") },
    stdio: ["ignore", "inherit", "pipe"],
  });
  const ports = await announced(child);
  return { process: child, grpcPort: ports[0], httpPort: ports[1] };
}

/** SIGTERM, then the exit status: tokenwire stops cleanly with 0. */
export async function stop(serving: Serving): Promise<number | null> {
  const exited = once(serving.process, "exit");
  serving.process.kill("SIGTERM");
  const [code] = await exited;
  return code as number | null;
}

async function announced(child: ChildProcess): Promise<[number, number]> {
  const timer = setTimeout(() => child.kill("SIGKILL"), START_MS);
  const seen: string[] = [];
  try {
    for await (const line of createInterface({ input: child.stderr! })) {
      const found = ANNOUNCE.exec(line);
      if (found) {
        child.stderr!.resume(); // later log lines must not fill the pipe and block the server
        return [Number(found[1]), Number(found[2])];
      }
      seen.push(line);
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`tokenwire exited without serving:\n${seen.join("\n")}`);
}
