"""Hypothesis strategies shared by the fuzz tests: payload structures and TOML documents.

Why structured generators beside raw bytes: random bytes almost never get past msgpack's framing
or TOML's grammar, so the decoder's and parsers' own checks would go untested. These build
inputs that are well-formed at the outer layer and arbitrary (or nearly valid) inside.
"""

from __future__ import annotations

import json
import time

from hypothesis import strategies as st

from cxpulse.v1 import payload
from cxpulse.v1.kinds import EVENT_KINDS, INT, KIND_METHODS, KINDS, US

NOW_US = time.time_ns() // 1000

# Anything msgpack can carry (bin and ext included: the decoder must refuse them cleanly).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
)
any_msgpack = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-1000, 1000)), inner, max_size=6),
    ),
    max_leaves=40,
)

SERIES_KEYS = ["tg", "a", "k", "m", "iv", "dt", "h"] + sorted({c for cols in KINDS.values() for c in cols})
near_keys = st.sampled_from(SERIES_KEYS + ["x", ""])


def _series_like(inner):
    return st.dictionaries(near_keys, inner, max_size=12)


structured = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), scalars), "t0": st.one_of(st.just(NOW_US), scalars)},
    optional={
        "s": st.lists(st.one_of(_series_like(any_msgpack), any_msgpack), max_size=4),
        "e": st.lists(
            st.dictionaries(st.sampled_from(["id", "k", "tg", "s", "e", "sev", "x"]), any_msgpack, max_size=7),
            max_size=3,
        ),
        "p": st.lists(
            st.dictionaries(st.sampled_from(["tg", "a", "ts", "m", "r", "hops"]), any_msgpack, max_size=6), max_size=3
        ),
    },
)


def _value(ctype: str):
    if ctype == US:
        return st.one_of(st.none(), st.integers(0, 600_000_000))
    if ctype == INT:
        return st.one_of(st.none(), st.integers(-(2**40), 2**40), st.integers(-200, 1200))
    return st.one_of(st.none(), st.text(max_size=20))


names = st.text(min_size=1, max_size=30)


@st.composite
def series(draw):
    kind = draw(st.sampled_from(sorted(KINDS)))
    s = payload.Series(
        target=draw(names),
        address=draw(names),
        method=draw(st.sampled_from(KIND_METHODS[kind])),
        kind=kind,
        hop=draw(st.one_of(st.none(), st.integers(1, 64))),
    )
    n = draw(st.integers(1, 4))
    t = draw(st.integers(NOW_US - 3 * 86_400_000_000, NOW_US))
    steps = draw(st.lists(st.integers(0, 5_000_000), min_size=n, max_size=n))
    cols = {c: draw(st.lists(_value(ct), min_size=n, max_size=n)) for c, ct in KINDS[kind].items()}
    for i, step in enumerate(steps):
        t += step
        s.add(t, **{c: v[i] for c, v in cols.items()})
    return s


@st.composite
def events(draw):
    start = draw(st.integers(NOW_US - 86_400_000_000, NOW_US))
    end = draw(st.one_of(st.none(), st.integers(start, start + 3_600_000_000)))
    return payload.Event(
        id=draw(names),
        kind=draw(st.sampled_from(EVENT_KINDS)),
        target=draw(names),
        start_us=start,
        end_us=end,
        severity=draw(st.integers(1, 3)),
        evidence=draw(st.text(max_size=60)),
    )


@st.composite
def paths(draw):
    hops = [
        payload.PathHop(
            i + 1, draw(st.one_of(st.none(), names)), draw(st.one_of(st.none(), st.integers(0, 600_000_000)))
        )
        for i in range(draw(st.integers(0, 5)))
    ]
    return payload.PathSnapshot(
        draw(names),
        draw(names),
        draw(st.integers(NOW_US - 86_400_000_000, NOW_US)),
        draw(st.sampled_from(["icmp", "udp", "tcp"])),
        draw(st.booleans()),
        hops,
    )


valid_batches = st.builds(
    payload.SampleBatch, st.lists(series(), max_size=3), st.lists(events(), max_size=2), st.lists(paths(), max_size=2)
)


# -- TOML --


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_doc(top: dict, tables: dict[str, dict], arrays: dict[str, list[dict]]) -> str:
    out = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in top.items()]
    for name, t in tables.items():
        out.append(f"[{json.dumps(name)}]")
        out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in t.items()]
    for name, items in arrays.items():
        for t in items:
            out.append(f"[[{json.dumps(name)}]]")
            out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in t.items()]
    return "\n".join(out) + "\n"


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-5, 100_000),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=10)
