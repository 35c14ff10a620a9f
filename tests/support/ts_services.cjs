// The handlers of tests/support/sdk_services.py, ported to the official TypeScript SDK
// (@restatedev/restate-sdk, pinned in scripts/install_tools.sh). Plain CommonJS: the SDK ships
// JavaScript, so no build step. Same service and handler names, inputs, outputs and side effects.
//
// Served with the SDK's own `restate.serve({services, port})`: node:http2, cleartext only, so
// runtimes reach it over h2c with prior knowledge and the SDK runs in BIDI_STREAM mode.
//
//   NODE_PATH=<dir holding @restatedev/restate-sdk> E2E_EFFECTS_DIR=<dir> PORT=<port> \
//     node tests/support/ts_services.cjs
//
// Side effects that tests count go to files: `record(tag, what)` appends the line `what` to
// `$E2E_EFFECTS_DIR/<tag>.log` (O_APPEND), exactly as the Python port does. Lines appended inside
// `ctx.run` count executions of a journaled step; lines appended outside it count (re)executions
// of the handler body.
//
// Where Python returns `None` (serialised as no bytes) this port returns `undefined`, which the
// SDK's JSON serde also turns into an empty body; `null` would be the JSON text `null`. Handlers
// that take no input, or return nothing, in Python declare `serde.empty` for it here, so the
// discovery manifest announces the same inputs and outputs (the SDK's default is optional JSON
// both ways); tests/e2e/test_ts_sdk_port.py compares the two manifests.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const restate = require("@restatedev/restate-sdk");

const { TerminalError, serde, rpc } = restate;
const EFFECTS_ENV = "E2E_EFFECTS_DIR";

function effectsFile(tag) {
  const root = process.env[EFFECTS_ENV];
  if (!root) {
    throw new Error(`${EFFECTS_ENV} is not set`);
  }
  const safe = String(tag).replace(/[^A-Za-z0-9\-_.]/g, "_");
  return path.join(root, `${safe}.log`);
}

/** Append one line to the effects file of `tag` (O_APPEND: atomic for short lines). */
function record(tag, what) {
  const fd = fs.openSync(effectsFile(tag), "a", 0o644);
  try {
    fs.writeSync(fd, `${what}\n`);
  } finally {
    fs.closeSync(fd);
  }
  return what;
}

/** How many lines equal to `what` the effects file of `tag` holds. */
function count(tag, what) {
  let text;
  try {
    text = fs.readFileSync(effectsFile(tag), "utf8");
  } catch (e) {
    if (e.code === "ENOENT") return 0;
    throw e;
  }
  return text.split("\n").filter((line) => line === what).length;
}

const noInput = { input: serde.empty };
const noOutput = { output: serde.empty };

// --------------------------------------------------------------------------- Greeter (service)

const greeter = restate.service({
  name: "Greeter",
  handlers: {
    greet: async (ctx, name) => `Hello, ${name}!`,
  },
});

// --------------------------------------------------------------------------- Counter (object)

const counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx, delta) => {
      const value = ((await ctx.get("count")) ?? 0) + delta;
      ctx.set("count", value);
      return value;
    },
    get: restate.handlers.object.shared(noInput, async (ctx) => (await ctx.get("count")) ?? 0),
    reset: restate.handlers.object.exclusive({ ...noInput, ...noOutput }, async (ctx) => {
      ctx.clear("count");
    }),
  },
});

// --------------------------------------------------------------------------- Steps (service)

const steps = restate.service({
  name: "Steps",
  handlers: {
    // {"tag", "n"} -> {"results": [...], "invocation_id"}; each step records `step-i` in ctx.run.
    run: async (ctx, req) => {
      const results = [];
      for (let i = 0; i < Number(req.n); i++) {
        const name = `step-${i}`;
        results.push(await ctx.run(name, () => record(req.tag, name)));
      }
      return { results, invocation_id: ctx.request().id };
    },
  },
});

// --------------------------------------------------------------------------- Flaky (service)

const flaky = restate.service({
  name: "Flaky",
  handlers: {
    // {"tag", "fail_times": K}: one step, then K retryable failures, then one more step. The
    // failure counter lives in the effects file (outside the journal).
    run: async (ctx, req) => {
      const tag = req.tag;
      const failTimes = Number(req.fail_times);
      await ctx.run("before", () => record(tag, "before"));
      if (count(tag, "failure") < failTimes) {
        record(tag, "failure");
        throw new Error(`flaky failure #${count(tag, "failure")}`);
      }
      await ctx.run("after", () => record(tag, "after"));
      return `ok after ${failTimes} failures`;
    },
  },
});

// --------------------------------------------------------------------------- Failer (service)

const failer = restate.service({
  name: "Failer",
  handlers: {
    // One `attempt` line per execution of the body, then a terminal failure with code 418.
    fail: async (ctx, tag) => {
      record(tag, "attempt");
      throw new TerminalError("nope", { errorCode: 418 });
    },
  },
});

// --------------------------------------------------------------------------- Sleeper (service)

const sleeper = restate.service({
  name: "Sleeper",
  handlers: {
    // {"tag", "ms"}: step `before`, durable sleep, step `after`.
    sleep: async (ctx, req) => {
      const tag = req.tag;
      const ms = Number(req.ms);
      await ctx.run("before", () => record(tag, "before"));
      record(tag, "sleeping"); // not journaled: one line per execution that reaches the sleep
      await ctx.sleep(ms);
      await ctx.run("after", () => record(tag, "after"));
      return `slept ${ms} ms`;
    },
  },
});

// --------------------------------------------------------------------------- Internal (private)

const internal = restate.service({
  name: "Internal",
  handlers: {
    secret: async (ctx, name) => `secret for ${name}`,
  },
  options: { ingressPrivate: true },
});

// --------------------------------------------------------------------------- Awaiter (object)

const awaiter = restate.object({
  name: "Awaiter",
  handlers: {
    // Creates an awakeable, publishes its id in state `awakeable_id`, and awaits it. A rejection
    // propagates as the terminal failure of this invocation.
    wait: restate.handlers.object.exclusive(noInput, async (ctx) => {
      const { id, promise } = ctx.awakeable();
      ctx.set("awakeable_id", id);
      const value = await promise;
      return `got ${value}`;
    }),
    awakeable_id: restate.handlers.object.shared(
      noInput,
      async (ctx) => (await ctx.get("awakeable_id")) ?? undefined,
    ),
  },
});

// --------------------------------------------------------------------------- Signup (workflow)

const signup = restate.workflow({
  name: "Signup",
  handlers: {
    // {"email", "tag"}: sends the (recorded) e-mail, waits for the `link` promise, then marks
    // the workflow verified.
    run: async (ctx, req) => {
      const { tag, email } = req;
      await ctx.run("send-email", () => record(tag, "send-email"));
      ctx.set("status", "waiting");
      const secretValue = await ctx.promise("link").get();
      ctx.set("status", "verified");
      return `verified ${email} with ${secretValue}`;
    },
    click: restate.handlers.workflow.shared(noOutput, async (ctx, secretValue) => {
      await ctx.promise("link").resolve(secretValue);
    }),
    status: restate.handlers.workflow.shared(
      noInput,
      async (ctx) => (await ctx.get("status")) ?? undefined,
    ),
  },
});

// --------------------------------------------------------------------------- Cancellable (service)

const cancellable = restate.service({
  name: "Cancellable",
  handlers: {
    // Step `start`, a 1-hour sleep; on TerminalError (cancellation) runs the journaled
    // compensation step `compensate` and rethrows. `sleeping` (not journaled) tells the test
    // that the body reached the sleep.
    run: async (ctx, tag) => {
      try {
        await ctx.run("start", () => record(tag, "start"));
        record(tag, "sleeping");
        await ctx.sleep({ hours: 1 });
      } catch (e) {
        if (e instanceof TerminalError) {
          await ctx.run("compensate", () => record(tag, "compensate"));
        }
        throw e;
      }
      return "woke up";
    },
  },
});

// --------------------------------------------------------------------------- Caller (service)

const GREETER = { name: "Greeter" };
const INTERNAL = { name: "Internal" };
const COUNTER = { name: "Counter" };
const CANCELLABLE = { name: "Cancellable" };

// The send-client methods take (input) or (input, SendOpts): an explicit `undefined` as the
// second argument is refused ("The second argument must be either Opts or SendOpts").
function sendArgs(input, delayMs) {
  return delayMs ? [input, rpc.sendOpts({ delay: { milliseconds: Number(delayMs) } })] : [input];
}

const caller = restate.service({
  name: "Caller",
  handlers: {
    // Request-response call to Greeter.greet.
    call_greet: async (ctx, name) => ctx.serviceClient(GREETER).greet(name),
    // Calls the ingress-private Internal.secret: reachable from handlers.
    call_private: async (ctx, name) => ctx.serviceClient(INTERNAL).secret(name),
    // {"key", "delta", "delay_ms"?}: one-way (optionally delayed) send to Counter.add; returns
    // the id of the invocation it created.
    send_add: async (ctx, req) => {
      const client = ctx.objectSendClient(COUNTER, req.key);
      const handle = client.add(...sendArgs(Number(req.delta), req.delay_ms));
      return await handle.invocationId;
    },
    // {"name", "delay_ms"?}: one-way (optionally delayed) send to Greeter.greet.
    send_greet: async (ctx, req) => {
      const handle = ctx.serviceSendClient(GREETER).greet(...sendArgs(req.name, req.delay_ms));
      return await handle.invocationId;
    },
    // Calls Cancellable.run (which sleeps an hour) and awaits it; records the callee's
    // invocation id as `child <id>` in the effects of `<tag>-parent` (not journaled).
    call_cancellable: async (ctx, tag) => {
      const call = ctx.serviceClient(CANCELLABLE).run(tag);
      record(`${tag}-parent`, `child ${await call.invocationId}`);
      return await call;
    },
  },
});

// --------------------------------------------------------------------------- Signals (service)

const signals = restate.service({
  name: "Signals",
  handlers: {
    // Records `waiting` (not journaled), then awaits the named signal `go`.
    wait_signal: async (ctx, tag) => {
      record(tag, "waiting");
      return `got ${await ctx.signal("go")}`;
    },
    // {"id", "value"}: resolves the named signal `go` of invocation `id`.
    send_signal: restate.handlers.handler(noOutput, async (ctx, req) => {
      ctx.invocation(req.id).signal("go").resolve(req.value);
    }),
    // {"id", "message"}: rejects the named signal `go` of invocation `id` (code 418).
    reject_signal: restate.handlers.handler(noOutput, async (ctx, req) => {
      ctx.invocation(req.id).signal("go").reject(new TerminalError(req.message, { errorCode: 418 }));
    }),
  },
});

const SERVICES = [greeter, counter, steps, flaky, failer, sleeper, internal, caller, awaiter,
  signup, cancellable, signals];

if (require.main === module) {
  const port = Number(process.env.PORT);
  if (!port) {
    throw new Error("PORT is not set");
  }
  restate.serve({ services: SERVICES, port }).then(
    (bound) => console.log(`ts_services listening on ${bound}`),
    (err) => {
      console.error(`ts_services failed to listen: ${err}`);
      process.exit(1);
    },
  );
}

module.exports = { SERVICES, record, count };
