"""ITU-T G.107 E-model: the transmission rating R of a call, and the MOS it predicts.
G.107 (06/2015) clause 7, codec values from G.113 Appendix I; ``rate_path`` for a measured path.
Design notes: docs/collector-internals.md, "collector/score/emodel.py".
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from operator import attrgetter

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "JITTER_BUFFER_MIN_MS",
    "Codec",
    "DelayBudget",
    "Params",
    "Rating",
    "burst_r_from_runs",
    "codec_by_name",
    "mos_from_r",
    "one_way_delay",
    "rate",
    "rate_path",
]


@dataclass(frozen=True)
class Params:
    """The E-model inputs, named as in G.107 Table 3 and set to its default values.

    Loudness ratings and losses in dB, noise in dBm0p / dBmp, delays in ms, Ppl in percent.
    ``Dr`` enters only through ``LSTR = STMR + Dr``; it is kept so the set reads like the table.
    """

    SLR: float = 8.0  # send loudness rating
    RLR: float = 2.0  # receive loudness rating
    STMR: float = 15.0  # sidetone masking rating
    LSTR: float = 18.0  # listener sidetone rating
    Ds: float = 3.0  # D-value of the telephone, send side
    Dr: float = 3.0  # D-value of the telephone, receive side
    TELR: float = 65.0  # talker echo loudness rating
    WEPL: float = 110.0  # weighted echo path loss
    T: float = 0.0  # mean one-way delay of the echo path
    Tr: float = 0.0  # round-trip delay in a 4-wire loop
    Ta: float = 0.0  # absolute (mouth-to-ear) delay
    qdu: float = 1.0  # quantizing distortion units
    Ie: float = 0.0  # equipment impairment factor of the codec
    Bpl: float = 4.3  # packet-loss robustness factor of the codec
    Ppl: float = 0.0  # random packet-loss probability, percent
    BurstR: float = 1.0  # burst ratio: 1 random loss, > 1 bursty
    Nc: float = -70.0  # circuit noise referred to the 0 dBr point
    Nfor: float = -64.0  # noise floor at the receive side
    Ps: float = 35.0  # room noise at the send side, dB(A)
    Pr: float = 35.0  # room noise at the receive side, dB(A)
    A: float = 0.0  # advantage (expectation) factor
    mT: float = 100.0  # minimum perceivable delay for Idd
    sT: float = 1.0  # delay sensitivity for Idd

    def validate(self) -> None:
        """Reject inputs for which the formulas have no meaning (fail fast, say which)."""
        # Not asdict(): it deep-copies, and scoring a day validates thousands of times.
        if not all(map(math.isfinite, _all_params(self))):
            name, value = next((n, v) for n, v in zip(_PARAM_NAMES, _all_params(self)) if not math.isfinite(v))
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("T", "Tr", "Ta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} (delay, ms) must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.Ppl <= 100:
            raise ValueError(f"Ppl (packet loss, %) must be within 0..100, got {self.Ppl}")
        if not 0 <= self.Ie < 95:
            raise ValueError(f"Ie must be within 0..95 (95 is the floor of the R scale), got {self.Ie}")
        if self.Bpl <= 0:
            raise ValueError(f"Bpl must be > 0, got {self.Bpl}")
        if self.BurstR < 1:
            raise ValueError(f"BurstR must be >= 1 (1 is random loss), got {self.BurstR}")
        if self.qdu < 1:
            raise ValueError(f"qdu must be >= 1, got {self.qdu}")
        if self.mT <= 0 or self.sT <= 0:
            raise ValueError("mT and sT must be > 0")


_PARAM_NAMES = tuple(f.name for f in fields(Params))
_all_params = attrgetter(*_PARAM_NAMES)


@dataclass(frozen=True)
class Rating:
    """R, the MOS it maps to, and every impairment that made it, for the explanation."""

    r: float
    mos: float
    ro: float  # basic signal-to-noise ratio
    is_: float  # simultaneous impairments: Iolr + Ist + Iq
    id: float  # delay impairments: Idte + Idle + Idd
    ie_eff: float  # effective equipment impairment: codec plus packet loss
    a: float  # advantage factor
    no: float  # total noise power, dBm0p
    iolr: float
    ist: float
    iq: float
    idte: float  # talker echo
    idle: float  # listener echo
    idd: float  # too-long absolute delay
    params: Params

    def to_dict(self) -> dict:
        """JSON-friendly: the figures rounded for people, the inputs as given."""
        out = {k: round(v, 3) for k, v in asdict(self).items() if k != "params"}
        out["is"] = out.pop("is_")
        out["inputs"] = asdict(self.params)
        return out


def _log10_power_sum(*levels_db: float) -> float:
    return 10 * math.log10(sum(10 ** (x / 10) for x in levels_db))


def rate(p: Params = Params()) -> Rating:
    """R and its impairments for one full G.107 parameter set (clause 7)."""
    p.validate()
    no, ro, iolr, iq, roe = _fixed_terms(p.SLR, p.RLR, p.LSTR, p.Ds, p.Nc, p.Nfor, p.Ps, p.Pr, p.qdu)

    # 7.3 Simultaneous impairment factor Is (Iolr and Iq: _fixed_terms).
    stmro = -10 * math.log10(10 ** (-p.STMR / 10) + math.exp(-p.T / 4) * 10 ** (-p.TELR / 10))
    ist = (
        12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
        - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
        - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13)
        + 29
    )
    is_ = iolr + ist + iq  # (7-8)

    # 7.4 Delay impairment factor Id.
    terv = p.TELR - 40 * math.log10((1 + p.T / 10) / (1 + p.T / 150)) + 6 * math.exp(-0.3 * p.T**2)  # (7-22)
    if p.STMR < 9:
        terv += ist / 2  # TERVs: a weak sidetone masks the echo less
    re = 80 + 2.5 * (terv - 14)  # (7-21)
    if p.T < 1:
        idte = 0.0  # below 1 ms the echo is heard as sidetone, already counted in Ist
    else:
        idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-p.T))  # (7-19)
        if p.STMR > 20:
            idte = math.sqrt(idte**2 + ist**2)  # Idtes: a loud sidetone adds to the echo
    rle = 10.5 * (p.WEPL + 7) * (p.Tr + 1) ** -0.25  # (7-26)
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)  # (7-25)
    if p.Ta <= p.mT:
        idd = 0.0
    else:
        x = math.log10(p.Ta / p.mT) / math.log10(2)  # (7-28)
        k = 6 * p.sT
        idd = 25 * ((1 + x**k) ** (1 / k) - 3 * (1 + (x / 3) ** k) ** (1 / k) + 2)  # (7-27)
    id_ = idte + idle + idd  # (7-18)

    # 7.5 Effective equipment impairment factor Ie,eff.
    ie_eff = p.Ie + (95 - p.Ie) * p.Ppl / (p.Ppl / p.BurstR + p.Bpl)  # (7-29)

    r = ro - is_ - id_ - ie_eff + p.A
    return Rating(
        r=r,
        mos=mos_from_r(r),
        ro=ro,
        is_=is_,
        id=id_,
        ie_eff=ie_eff,
        a=p.A,
        no=no,
        iolr=iolr,
        ist=ist,
        iq=iq,
        idte=idte,
        idle=idle,
        idd=idd,
        params=p,
    )


@functools.lru_cache(maxsize=64)
def _fixed_terms(
    SLR: float, RLR: float, LSTR: float, Ds: float, Nc: float, Nfor: float, Ps: float, Pr: float, qdu: float
) -> tuple[float, float, float, float, float]:
    """No, Ro, Iolr, Iq and Roe: the terms of the loudness, noise and quantizing parameters alone.

    Why apart: a measured path changes only delay, loss and burstiness, so a day's 2,880 ratings
    share one set of these (cached per parameter set: G.107 defaults, never measured values).
    """
    # 7.2 Basic signal-to-noise ratio Ro.
    olr = SLR + RLR
    nos = Ps - SLR - Ds - 100 + 0.004 * (Ps - olr - Ds - 14) ** 2
    pre = Pr + 10 * math.log10(1 + 10 ** ((10 - LSTR) / 10))
    nor = RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = Nfor + RLR
    no = _log10_power_sum(Nc, nos, nor, nfo)  # (7-3)
    ro = 15 - 1.5 * (SLR + no)  # (7-2)
    # 7.3 Iolr and Iq.
    xolr = olr + 0.2 * (64 + no - RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    q = 37 - 15 * math.log10(qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q**2
    z = 46 / 30 - g / 40
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    iq = 15 * math.log10(1 + 10**y + 10**z)
    roe = -1.5 * (no - RLR)  # (7-20)
    return no, ro, iolr, iq, roe


def mos_from_r(r: float) -> float:
    """MOS (conversational quality, MOS-CQE) from R, G.107 Annex B (B-4).

    The cubic dips to 0.99 for R between about 1 and 6.5; it is held at 1, the bottom of the
    MOS scale, so that a worse R never reads as a better MOS (monotone, and the scale's floor).
    """
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


# --- Codecs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """A codec's E-model figures and the delay it adds before the first bit leaves.

    ``frame_ms`` is the audio carried per packet (packetization delay), ``lookahead_ms`` the
    encoder's algorithmic look-ahead; both count toward the mouth-to-ear delay.
    """

    name: str
    ie: float
    bpl: float
    frame_ms: float
    lookahead_ms: float
    source: str

    @property
    def delay_ms(self) -> float:
        return self.frame_ms + self.lookahead_ms


CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec(
            "g711",
            ie=0.0,
            bpl=4.3,
            frame_ms=20,
            lookahead_ms=0,
            source="ITU-T G.113 Appendix I: G.711 without PLC (random loss); Ie 0, Bpl 4.3 are also "
            "G.107's default Ie and Bpl",
        ),
        Codec(
            "g711-plc",
            ie=0.0,
            bpl=25.1,
            frame_ms=20,
            lookahead_ms=0,
            source="ITU-T G.113 Appendix I: G.711 with packet-loss concealment (G.711 Appendix I)",
        ),
        Codec(
            "g729a",
            ie=11.0,
            bpl=19.0,
            frame_ms=20,
            lookahead_ms=5,
            source="ITU-T G.113 Appendix I: G.729A + VAD; two 10 ms frames per packet, 5 ms look-ahead",
        ),
        Codec(
            "opus",
            ie=0.0,
            bpl=25.1,
            frame_ms=20,
            lookahead_ms=6.5,
            source="ASSUMPTION: G.113 Appendix I has no Opus entry (Opus, RFC 6716, is younger). "
            "Ie 0: a speech-mode Opus call at the bit rates CCaaS softphones use is at least as "
            "clear as G.711 on the narrowband R scale, whose best is Ie 0. Bpl 25.1: Opus has "
            "built-in concealment; we credit it exactly as much as G.711 with PLC, not more, so "
            "a lossy path is never rated better than the G.711+PLC figure G.113 publishes. "
            "20 ms frames with 6.5 ms look-ahead: RFC 6716's default 26.5 ms algorithmic delay",
        ),
    )
}

DEFAULT_CODEC = "g711-plc"  # what softphones and CCaaS WebRTC stacks send when they send G.711


def codec_by_name(name: str) -> Codec:
    """The codec table entry; ValueError naming the known codecs otherwise."""
    key = name.strip().lower().replace("_", "-").replace(".", "")
    if key in CODECS:
        return CODECS[key]
    raise ValueError(f"unknown codec {name!r} (known: {', '.join(sorted(CODECS))}; or give --ie and --bpl)")


# --- From measurements to G.107 inputs -----------------------------------------------------

JITTER_BUFFER_MIN_MS = 40.0  # two 20 ms frames: what adaptive jitter buffers hold on a clean path


@dataclass(frozen=True)
class DelayBudget:
    """The one-way mouth-to-ear delay of a call leg, and what it is made of (ms)."""

    network_ms: float  # half the RTT to the media edge
    jitter_buffer_ms: float
    codec_ms: float

    @property
    def total_ms(self) -> float:
        return self.network_ms + self.jitter_buffer_ms + self.codec_ms


def one_way_delay(
    rtt_to_edge_ms: float,
    jitter_ms: float,
    codec: Codec | str = DEFAULT_CODEC,
    *,
    jitter_buffer_min_ms: float = JITTER_BUFFER_MIN_MS,
) -> DelayBudget:
    """The one-way delay G.107 needs, built from what the agent measures.

    - network: half the RTT to the media edge (the path is taken as symmetric; the agent cannot
      see the far leg beyond the edge, so the result describes the agent's own leg);
    - jitter buffer: twice the measured jitter, at least ``jitter_buffer_min_ms`` (adaptive
      buffers size themselves to about twice the jitter and never go below a frame or two);
    - codec: packetization (frame) plus the encoder's look-ahead.
    """
    c = codec_by_name(codec) if isinstance(codec, str) else codec
    for name, value in (
        ("rtt_to_edge_ms", rtt_to_edge_ms),
        ("jitter_ms", jitter_ms),
        ("jitter_buffer_min_ms", jitter_buffer_min_ms),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return DelayBudget(rtt_to_edge_ms / 2, max(2 * jitter_ms, jitter_buffer_min_ms), c.delay_ms)


def burst_r_from_runs(lost: int, sent: int, loss_runs: int) -> float:
    """G.107's BurstR from a packet trace: observed mean loss-run length over the random one.

    For a two-state (Gilbert) loss model with p = P(lost | previous received) and
    q = P(received | previous lost), G.107 defines BurstR = 1 / (p + q). The mean run of losses
    is 1/q and the loss ratio Ppl = p / (p + q), so BurstR = mean_run * (1 - Ppl): for random loss
    the mean run is 1 / (1 - Ppl) and BurstR is 1. Loss spread more evenly than random (runs
    shorter than chance) is not credited: the result is at least 1.
    """
    if sent <= 0 or lost < 0 or lost > sent or loss_runs < 0 or loss_runs > lost:
        raise ValueError(f"inconsistent trace: lost={lost} sent={sent} loss_runs={loss_runs}")
    if lost == 0 or lost == sent:
        return 1.0
    if loss_runs == 0:
        raise ValueError("lost > 0 needs at least one loss run")
    return max(1.0, (lost / loss_runs) * (1 - lost / sent))


def rate_path(
    one_way_ms: float,
    loss_pct: float,
    *,
    codec: Codec | str | None = None,
    ie: float | None = None,
    bpl: float | None = None,
    burst_r: float = 1.0,
) -> Rating:
    """R for a measured path under the issue's convention: T = Ta = one-way delay, Tr = 2T.

    The codec gives Ie and Bpl; or both are given directly (not both ways at once). Without
    either, G.107's defaults apply (Ie 0, Bpl 4.3: G.711 without PLC).
    """
    if codec is not None and (ie is not None or bpl is not None):
        raise ValueError("give either a codec or Ie and Bpl, not both")
    if (ie is None) != (bpl is None):
        raise ValueError("Ie and Bpl go together: give both")
    if codec is not None:
        c = codec_by_name(codec) if isinstance(codec, str) else codec
        ie, bpl = c.ie, c.bpl
    params = Params(
        T=one_way_ms,
        Ta=one_way_ms,
        Tr=2 * one_way_ms,
        Ppl=loss_pct,
        BurstR=burst_r,
        **({} if ie is None or bpl is None else {"Ie": ie, "Bpl": bpl}),  # both or neither (checked above)
    )
    return rate(params)
