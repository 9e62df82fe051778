"""The series classifier: each series of a study -> t1, t1c, t2, flair or other.

Decision, per series (every step is recorded in the reason):

1. **Manual override** (``overrides``: series UID -> class) wins; then **site rules**
   (``site_rules``: regular expression on the SeriesDescription -> class, first match).
2. **Not an acquired MR image** -> ``other``: other modality, non-image SOP class, Image
   Type marking a localizer, reformat (MPR, projection, DERIVED\\SECONDARY), subtraction,
   diffusion/perfusion map, phase, field map, Dixon fat/in/opposed-phase.
3. **Description vocabulary** (:mod:`brainmets.classify.vocabulary`) naming a kind that is
   not a target (DWI, SWI/T2*, TOF, perfusion, localizer, limited coverage...) -> ``other``.
4. **Weighting**: the description's T1/T2/FLAIR word and the acquisition physics
   (:func:`brainmets.classify.rules.physics_call`) are compared. Agreement gives a high
   confidence; when they disagree, physics wins if it is unambiguous (e.g. a FLAIR TI with
   a long TE), else the description. Either alone decides with a lower confidence.
5. **Contrast** (T1 only): ``t1c`` or ``t1`` from signed evidence — an explicit pre/post
   statement in the description (strongest), the ContrastBolusAgent field or the enhanced
   Contrast/Bolus Agent Administered flag (only when they differ between the study's series:
   an agent entered once at registration is copied into every series, the localizer
   included, and says nothing), Image Type POST_/PRE_CONTRAST, ContrastBolusStartTime
   against the acquisition time, the acquisition **order** relative to the study's first
   contrast-enhanced series (a series with explicit post-contrast evidence, or a DSC/DCE
   perfusion, which is the injection), a stereotactic / navigation planning volume (Gamma
   Knife, SRS, neuronavigation T1 are post-contrast by practice), and the repeat of an
   earlier identical T1 (the later is the post-contrast one). No evidence: pre-contrast.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from brainmets.classify.header import SeriesHeader, parse_datetime
from brainmets.classify.rules import (
    ACQUISITION_CONTRAST,
    STRONG,
    TARGET_WEIGHTINGS,
    Call,
    contrast_flavor,
    image_type_call,
    is_mr_image,
    physics_call,
)
from brainmets.classify.vocabulary import DescriptionCall, describe, normalise

CLASSES: tuple[str, ...] = ("t1", "t1c", "t2", "flair", "other")
TARGETS: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
PERFUSION_INJECTION = re.compile(r"(?<![a-z0-9])(?:dsc|dce|perf|perfusion|ep2d perf|twist|dyn)")


@dataclass
class Classification:
    """The class of one series, with confidence (0..1) and a human-readable reason."""

    uid: str
    cls: str
    confidence: float
    reason: str
    kind: str | None = None  # t1/t2/flair or the 'other' kind (diffusion, localizer...)
    contrast: bool | None = None  # T1 family: post-contrast?
    contrast_reason: str = ""
    source: str = "rules"  # rules | site rule | manual override
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, 3)
        return d


# ---------------------------------------------------------------- base weighting
@dataclass
class _Base:
    kind: str | None  # t1 / t2 / flair / other kind
    confidence: float
    reason: str
    evidence: list[str]

    @property
    def target(self) -> bool:
        return self.kind in TARGET_WEIGHTINGS


def _other(kind: str | None, conf: float, reason: str, ev: list[str]) -> _Base:
    return _Base(kind or "unknown", conf, reason, ev)


def base_weighting(h: SeriesHeader, d: DescriptionCall) -> _Base:
    """Steps 2-4 of the module docstring: an 'other' kind or the T1/T2/FLAIR weighting."""
    ev: list[str] = []
    if h.modality and h.modality.upper() != "MR":
        return _other("not_mr", 1.0, f"modality {h.modality}, not MR", ev)
    if h.n_instances == 0:
        return _other("non_image", 1.0, "no image instances in this series", ev)
    if not is_mr_image(h):
        return _other("non_image", 0.95, f"SOP class {h.sop_class or h.sop_class_uid}", ev)
    it = image_type_call(h)
    if it.kind:
        return _other(it.kind, 0.95 if it.strength >= STRONG else 0.85, it.reason, ev)
    phys = physics_call(h)
    if phys.reason:
        ev.append(f"physics: {phys.reason}" + (f" -> {phys.kind}" if phys.kind else ""))
    if d.reason:
        ev.append(d.reason)
    if phys.kind in ("diffusion", "angiography") and phys.strength >= STRONG:
        return _other(phys.kind, 0.95, phys.reason, ev)
    if h.temporal_positions and h.temporal_positions > 2:
        why = f"dynamic series ({h.temporal_positions} temporal positions)"
        return _other("perfusion", 0.85, why, ev)
    if d.other and not d.other_weak:
        why = f"description {h.description or h.protocol_name!r} names a " + (
            f"{d.other.replace('_', ' ')} series ({d.other_token!r})"
        )
        return _other(d.other, 0.9, why, ev)
    if d.other and d.other_weak:
        derived = bool(h.image_type) and h.image_type[0].upper() == "DERIVED"
        if d.other == "reformat" and derived:
            why = f"derived series named as a reformat ({d.other_token!r})"
            return _other("reformat", 0.85, why, ev)
        if d.weighting is None and phys.kind not in TARGET_WEIGHTINGS:
            why = f"description names a {d.other.replace('_', ' ')} series ({d.other_token!r})"
            return _other(d.other, 0.6, why, ev)
        ev.append(f"ambiguous token {d.other_token!r} ignored")

    dw, pk = d.weighting, phys.kind
    contrast_kind = ACQUISITION_CONTRAST.get((h.acquisition_contrast or "").upper())
    if dw and pk in TARGET_WEIGHTINGS:
        if dw == pk:
            conf = min(0.99, 0.6 + 0.4 * max(d.strength, phys.strength))
            return _Base(dw, conf, f"{d.reason}; acquisition agrees ({phys.reason})", ev)
        if phys.strength >= STRONG and d.strength <= 0.9:
            why = f"acquisition is {pk} ({phys.reason}) although {d.reason}"
            return _Base(pk, 0.6, why, ev)
        why = f"{d.reason} (acquisition suggests {pk}: {phys.reason})"
        return _Base(dw, 0.55, why, ev)
    if dw and pk is not None:
        if phys.strength >= STRONG:
            why = f"acquisition is {pk} ({phys.reason}) although {d.reason}"
            return _other(pk, 0.6, why, ev)
        return _Base(dw, 0.55, f"{d.reason} (acquisition suggests {pk}: {phys.reason})", ev)
    if dw:
        conf = d.strength * (0.95 if contrast_kind in (None, dw) else 0.7)
        return _Base(dw, conf, f"{d.reason}; acquisition parameters do not decide", ev)
    if pk in TARGET_WEIGHTINGS:
        conf = phys.strength * 0.85
        if contrast_kind == pk:
            conf = min(0.95, conf + 0.1)
        return _Base(pk, conf, f"acquisition: {phys.reason}", ev)
    if pk is not None:
        return _other(pk, phys.strength, f"acquisition: {phys.reason}", ev)
    if contrast_kind:
        why = f"enhanced Acquisition Contrast {h.acquisition_contrast}"
        if contrast_kind in TARGET_WEIGHTINGS:
            return _Base(contrast_kind, 0.6, why, ev)
        return _other(contrast_kind, 0.6, why, ev)
    return _other("unknown", 0.3, "neither the description nor the acquisition identify it", ev)


# ------------------------------------------------------------------- study context
def _when(h: SeriesHeader) -> _dt.datetime | None:
    if h.acquisition_datetime:
        try:
            return _dt.datetime.fromisoformat(h.acquisition_datetime)
        except ValueError:
            pass
    return parse_datetime(h.series_date, h.series_time)


def _before(a: SeriesHeader, b: SeriesHeader) -> bool | None:
    """Whether ``a`` was acquired before ``b`` (time, else series number), or None."""
    ta, tb = _when(a), _when(b)
    if ta is not None and tb is not None and ta != tb:
        return ta < tb
    na, nb = a.series_number, b.series_number
    if na is not None and nb is not None and na != nb:
        return na < nb
    return None


def _order_key(h: SeriesHeader) -> tuple[Any, ...]:
    t = _when(h)
    return (t is None, t or _dt.datetime.min, h.series_number or 0, h.uid)


@dataclass
class _Context:
    """Facts about a study that the contrast decision needs."""

    agent_discriminative: bool
    administered_discriminative: bool
    injection: SeriesHeader | None = None
    injection_reason: str = ""


def _has_agent(h: SeriesHeader) -> bool:
    a = (h.contrast_agent or "").strip().lower()
    return bool(a) and a not in ("none", "no", "n", "0", "nil", "keine", "aucun", "ninguno", "-")


def _study_context(
    headers: Sequence[SeriesHeader], calls: Mapping[str, DescriptionCall]
) -> _Context:
    mr = [h for h in headers if is_mr_image(h)]
    agents = [_has_agent(h) for h in mr]
    administered = [h.contrast_administered is True for h in mr]
    ctx = _Context(
        agent_discriminative=any(agents) and not all(agents),
        administered_discriminative=any(administered) and not all(administered),
    )
    events: list[tuple[SeriesHeader, str]] = []
    for h in mr:
        d = calls[h.uid]
        if d.contrast > 0:
            events.append((h, f"series {h.series_number} {h.text!r} {d.contrast_reason}"))
        elif ctx.agent_discriminative and _has_agent(h):
            events.append((h, f"series {h.series_number} records agent {h.contrast_agent!r}"))
        elif ctx.administered_discriminative and h.contrast_administered:
            events.append((h, f"series {h.series_number} flags the agent as administered"))
        elif contrast_flavor(h) > 0:
            events.append((h, f"series {h.series_number} Image Type POST_CONTRAST"))
        elif (
            d.other == "perfusion"
            and PERFUSION_INJECTION.search(d.norm)
            and not re.search(r"(?<![a-z0-9])(?:p|pc|c)?asl", d.norm)
        ):
            events.append((h, f"series {h.series_number} {h.text!r} is a bolus perfusion"))
    if events:
        events.sort(key=lambda e: _order_key(e[0]))
        ctx.injection, ctx.injection_reason = events[0]
    return ctx


def _time_of_day(value: str | None) -> _dt.time | None:
    if not value:
        return None
    t = parse_datetime("19000101", value)
    return t.time() if t else None


def _similar(a: SeriesHeader, b: SeriesHeader) -> bool:
    """Same T1 acquisition repeated (same type, plane, and TE/TR/TI within 20 %)."""
    if a.mr_acquisition_type != b.mr_acquisition_type or a.orientation != b.orientation:
        return False

    def close(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return abs(x - y) <= 0.2 * max(abs(x), abs(y), 1e-6)

    if a.echo_time is None and a.repetition_time is None:
        return normalise(a.description) == normalise(b.description)
    return (
        close(a.echo_time, b.echo_time)
        and close(a.repetition_time, b.repetition_time)
        and close(a.inversion_time, b.inversion_time)
    )


def _contrast_evidence(
    h: SeriesHeader,
    d: DescriptionCall,
    ctx: _Context,
    t1_series: Sequence[SeriesHeader],
) -> list[tuple[int, float, str]]:
    ev: list[tuple[int, float, str]] = []
    if d.contrast:
        ev.append((d.contrast, 0.95, f"description {d.contrast_reason}"))
    if _has_agent(h):
        if ctx.agent_discriminative:
            ev.append((1, 0.85, f"ContrastBolusAgent {h.contrast_agent!r}"))
        else:
            ev.append((0, 0.0, "ContrastBolusAgent is recorded on every series: ignored"))
    elif ctx.agent_discriminative:
        ev.append((-1, 0.5, "no ContrastBolusAgent while other series of the study have one"))
    if h.contrast_administered is not None and ctx.administered_discriminative:
        sign = 1 if h.contrast_administered else -1
        ev.append((sign, 0.8, f"Contrast/Bolus Agent Administered {h.contrast_administered}"))
    flavor = contrast_flavor(h)
    if flavor:
        ev.append((flavor, 0.8, "Image Type " + ("POST" if flavor > 0 else "PRE") + "_CONTRAST"))
    start = _time_of_day(h.contrast_start_time)
    when = _when(h)
    if start is not None and when is not None:
        after = when.time() >= start
        ev.append(
            (
                1 if after else -1,
                0.8,
                f"acquired {'after' if after else 'before'} "
                f"ContrastBolusStartTime {h.contrast_start_time}",
            )
        )
    inj = ctx.injection
    if inj is not None and inj.uid != h.uid:
        before = _before(h, inj)
        if before is True:
            ev.append(
                (
                    -1,
                    0.7,
                    f"acquired before the first contrast-enhanced series ({ctx.injection_reason})",
                )
            )
        elif before is False:
            ev.append(
                (
                    1,
                    0.7,
                    f"acquired after the first contrast-enhanced series ({ctx.injection_reason})",
                )
            )
    if d.planning:
        ev.append((1, 0.6, "stereotactic / navigation planning volume (post-contrast by practice)"))
    if not any(s for s, _, _ in ev):
        earlier = [
            o for o in t1_series if o.uid != h.uid and _similar(o, h) and _before(o, h) is True
        ]
        later = [
            o for o in t1_series if o.uid != h.uid and _similar(o, h) and _before(o, h) is False
        ]
        if earlier:
            why = f"repeat of the T1 acquired earlier as series {earlier[0].series_number}"
            ev.append((1, 0.45, why + " (a repeated T1 in a contrast protocol is the post)"))
        elif later and not earlier:
            ev.append(
                (-1, 0.45, f"first of a repeated T1 (repeated as series {later[0].series_number})")
            )
    return ev


def _decide_contrast(ev: list[tuple[int, float, str]]) -> tuple[bool, float, str]:
    signed = [(s, w, r) for s, w, r in ev if s]
    if not signed:
        notes = "; ".join(r for _, _, r in ev)
        return (
            False,
            0.6,
            "no contrast evidence: assumed pre-contrast" + (f" ({notes})" if notes else ""),
        )
    total = sum(s * w for s, w, _ in signed)
    post = total > 0
    agree = [w for s, w, _ in signed if (s > 0) == post]
    disagree = [w for s, w, _ in signed if (s > 0) != post]
    conf = max(agree) if agree else 0.5
    if disagree:
        conf = max(0.4, conf - 0.25)
    reasons = "; ".join(r for _, _, r in ev)
    return post, conf, reasons


# ------------------------------------------------------------------------ public
def _description_call(h: SeriesHeader, protocol_discriminative: bool) -> DescriptionCall:
    d = describe(h.description)
    if not h.protocol_name or not protocol_discriminative:
        return d
    if normalise(h.protocol_name) == d.norm:
        return d
    p = describe(h.protocol_name)
    if d.other is None and p.other is not None and not p.other_weak:
        d.other, d.other_token, d.other_weak = p.other, p.other_token, False
    if d.weighting is None and p.weighting is not None:
        d.weighting, d.strength = p.weighting, p.strength * 0.9
        d.reason = p.reason.replace("description", "protocol name")
        d.tokens = p.tokens
    if d.contrast == 0 and p.contrast:
        d.contrast, d.contrast_reason = p.contrast, "(protocol name) " + p.contrast_reason
    d.planning = d.planning or p.planning
    return d


def _check_class(value: str, where: str) -> str:
    v = str(value).strip().lower()
    if v not in CLASSES:
        raise ValueError(f"{where}: unknown class {value!r}; use one of {', '.join(CLASSES)}")
    return v


def compile_site_rules(site_rules: Mapping[str, str] | None) -> list[tuple[re.Pattern[str], str]]:
    """Validate and compile ``{regex: class}`` (matched case-insensitively, in order)."""
    out = []
    for pattern, cls in (site_rules or {}).items():
        try:
            rx = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(
                f"site rule {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
        out.append((rx, _check_class(cls, f"site rule {pattern!r}")))
    return out


def classify_study(
    headers: Sequence[SeriesHeader],
    *,
    site_rules: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, Classification]:
    """Classify every series of one study (the contrast decision uses the whole study)."""
    rules = compile_site_rules(site_rules)
    mr = [h for h in headers if is_mr_image(h)]
    protocols = {h.protocol_name for h in mr}
    proto_disc = len(protocols) > 1 or len(mr) <= 1
    calls = {h.uid: _description_call(h, proto_disc) for h in headers}
    ctx = _study_context(headers, calls)
    bases = {h.uid: base_weighting(h, calls[h.uid]) for h in headers}
    t1_series = sorted((h for h in headers if bases[h.uid].kind == "t1"), key=_order_key)

    out: dict[str, Classification] = {}
    for h in headers:
        b, d = bases[h.uid], calls[h.uid]
        if b.kind == "t1":
            ev = _contrast_evidence(h, d, ctx, t1_series)
            post, cconf, creason = _decide_contrast(ev)
            cls = "t1c" if post else "t1"
            c = Classification(
                uid=h.uid,
                cls=cls,
                confidence=round(b.confidence * cconf, 3),
                reason=f"{b.reason}; {'post' if post else 'pre'}-contrast: {creason}",
                kind="t1",
                contrast=post,
                contrast_reason=creason,
                evidence=b.evidence + [r for _, _, r in ev],
            )
        elif b.target:
            c = Classification(
                h.uid,
                b.kind or "other",
                round(b.confidence, 3),
                b.reason,
                kind=b.kind,
                evidence=b.evidence,
            )
            if d.contrast:
                c.contrast = d.contrast > 0
                c.contrast_reason = d.contrast_reason
        else:
            c = Classification(
                h.uid, "other", round(b.confidence, 3), b.reason, kind=b.kind, evidence=b.evidence
            )
        for rx, cls in rules:
            if rx.search(h.description or "") or rx.search(h.protocol_name or ""):
                c.evidence.append(f"rules said {c.cls} ({c.reason})")
                c.cls, c.confidence, c.source = cls, 1.0, "site rule"
                c.reason = f"site rule {rx.pattern!r} -> {cls}"
                break
        if overrides and h.uid in overrides:
            cls = _check_class(overrides[h.uid], f"override for {h.uid}")
            c.evidence.append(f"automatic: {c.cls} ({c.reason})")
            c.cls, c.confidence, c.source = cls, 1.0, "manual override"
            c.reason = f"manual override -> {cls}"
        out[h.uid] = c
    return out


def classify_series(h: SeriesHeader, **kwargs: Any) -> Classification:
    """Classify one series on its own (no study context for the contrast decision)."""
    return classify_study([h], **kwargs)[h.uid]


__all__ = [
    "CLASSES",
    "TARGETS",
    "Call",
    "Classification",
    "base_weighting",
    "classify_series",
    "classify_study",
    "compile_site_rules",
]
