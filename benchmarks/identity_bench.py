"""CPU cost of request identity per request: signing (our runtime) and verifying (both SDKs).

One line per operation, microseconds per call (best of ``--repeat`` runs of ``--calls`` calls):

* ``sign, new token``      a JWT made from scratch (the first request to a path in a second);
* ``sign, cached token``   the same path again within the second (Ed25519 is deterministic, so
  the signer reuses the token);
* ``sign Exchange, ...``   :meth:`RequestSigner.sign` as the transports call it (copies the request
  with the two headers);
* ``verify, ours, new token``  our SDK verifying a token it has not seen (signature checked);
* ``verify, ours, same token``  the same token again (ours keeps verified tokens: a runtime sends
  one token per path and second);
* ``verify, restate-sdk``  the official SDK's Rust core, which checks the signature every time.

Usage: ``python benchmarks/identity_bench.py [--calls 20000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invoker.exchange import Exchange
from invoker.request_identity import RequestSigner, generate_pem
from restate_lambda.clock import SystemClock
from restate_lambda.identity import IdentityVerifier

PATH = "/invoke/Greeter/greet"


class _EverySecondNew:
    """A clock one second later at every reading: every token is made from scratch."""

    def __init__(self) -> None:
        self.now = SystemClock().now_ms()

    def now_ms(self) -> int:
        self.now += 1000
        return self.now


def _best_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=repeat)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pem = generate_pem()
    fresh = RequestSigner.from_pem(pem, _EverySecondNew())
    cached = RequestSigner.from_pem(pem)
    request = Exchange(
        "POST",
        PATH,
        {
            "content-type": "application/vnd.restate.invocation.v5",
            "accept": "application/vnd.restate.invocation.v5",
            "x-restate-invocation-id": "inc_1a2b3c4d5e6f7g8h9i0j",
        },
        b"\0" * 64,
    )
    headers = cached.headers(PATH)
    ours = IdentityVerifier([cached.public_key])
    now_s = SystemClock().now_ms() / 1000
    ours.verify(headers, PATH, now_s)  # load the key
    paths = [f"{PATH}{i}" for i in range(args.calls)]  # distinct tokens, not yet verified
    unseen = iter([(cached.headers(p), p) for p in paths] * (args.repeat + 1))

    def verify_new() -> None:
        ours._verified.clear()
        hdrs, path = next(unseen)
        ours.verify(hdrs, path, now_s)

    rows: list[tuple[str, Callable[[], object]]] = [
        ("sign, new token", lambda: fresh.token(PATH)),
        ("sign, cached token", lambda: cached.token(PATH)),
        ("sign Exchange, new token", lambda: fresh.sign(request)),
        ("sign Exchange, cached token", lambda: cached.sign(request)),
        ("verify, ours, new token", verify_new),
        ("verify, ours, same token", lambda: ours.verify(headers, PATH, now_s)),
    ]
    try:
        from restate._internal import PyIdentityVerifier

        official = PyIdentityVerifier([cached.public_key])
        pairs = list(cached.headers(PATH).items())  # system-clock token: valid for 60 s
        rows.append(("verify, restate-sdk", lambda: official.verify(pairs, PATH)))
    except ImportError:
        pass
    for name, fn in rows:
        print(f"{name:<30} {_best_us(fn, args.calls, args.repeat):8.2f} us")


if __name__ == "__main__":
    main()
