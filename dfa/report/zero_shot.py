"""What a map says about tasks it never saw, as text: its zero-shot choice and estimate
(`dfa.training.zero_shot`), and the LOTO table of each cell's estimate beside its test gain."""

from __future__ import annotations

from typing import Any


def signed(x: float) -> str:
    return f"{x:+.3f}"


def fallback_method(zs: dict[str, Any] | None) -> str:
    """The alignment unseen tasks get when nothing carries (`dfa.training.fallback`; depth for a
    run trained before the fallback was chosen)."""
    return ((zs or {}).get("fallback") or {}).get("method", "depth")


def claimed(zs: dict[str, Any]) -> dict[str, Any]:
    """The gain over depth a run claims for an unseen task, as mean, ci and range: the folds'
    estimate for its zero-shot map, role's gain over depth on the training tasks where it falls
    back to role, and the prior's zero (depth itself) where it falls back to depth."""
    if not zs["epoch"] and fallback_method(zs) == "role":
        return zs["fallback"]["role_gain"]
    return zs


def map_given(zs: dict[str, Any]) -> str:
    """What an unseen task gets, in a few words (a LOTO cell's `zero-shot map` column)."""
    if zs["epoch"]:
        return f"epoch {zs['epoch']} x {zs['alpha']:g}"
    fb = fallback_method(zs)  # nothing carries, or no folds ran: fewer tasks than zero_shot_min_tasks
    return f"{fb} (nothing carries)" if zs.get("folds") else f"{fb} (no folds: {zs['n_tasks']} tasks)"


def zero_shot_text(zs: dict[str, Any] | None) -> str:
    """What a user reads about a map on a task it never saw, from its `zero_shot` record
    (`dfa.training.zero_shot`; train prints it, transfer and evaluate before their zero-shot rows)."""
    if not zs:
        return (
            "zero-shot: no estimate (the map was trained without inner folds, or on one task): "
            "unseen tasks get the in-distribution map"
        )
    which = (
        f"the fallback: the {fallback_method(zs)} baseline's ranking "
        "(nothing the map learned was shown to carry)"
        if zs["epoch"] == 0
        else f"start + {zs['alpha']:g} * (epoch {zs['epoch']}'s map - start)"
    )
    lines = [f"zero-shot map (tasks outside training): {which}"]
    if zs["epoch"] == 0:
        lines.append(f"  why: {zs['why']}")
        if zs.get("fallback"):
            lines.append(f"  fallback: {zs['fallback']['method']}: {zs['fallback']['why']}")
    else:
        lo, hi = zs["ci"]
        r0, r1 = zs["range"]
        lines.append(
            f"  expected val CPR gain over the start on a new task: {signed(zs['mean'])} "
            f"[{signed(lo)}, {signed(hi)}] (95% interval of the mean over {zs['n_tasks']} tasks held out "
            f"by {len(zs['folds'])} inner folds; per task {signed(r0)} to {signed(r1)})"
        )
    if zs.get("n_val", 30) < 30:
        lines.append(f"  note: {zs['n_val']} val prompts per task (fewer than 30): a noisy estimate")
    return "\n".join(lines)


def estimate_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per LOTO cell, the zero-shot map the run chose and its own estimate of the gain
    (inner folds, val split, against its start) beside the gain measured on the test split (dfa -
    depth, paired); empty when no row carries an estimate."""
    cells = [r for r in rows if r["method"] == "dfa" and r.get("zero_shot")]
    if not cells:
        return ""
    head = (
        "| pair | held-out task | zero-shot map | estimated gain [95% CI] | per-task range | "
        "measured dfa - depth [95% CI] | in range | claims a gain, test shows a loss |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    inside = claims = 0
    for r in cells:
        zs, d = r["zero_shot"], r["paired"]["depth"]
        which, est = map_given(zs), claimed(zs)
        lo, hi = est["ci"]
        r0, r1 = est["range"]
        dl, dh = d["ci"]
        within = r0 <= d["diff"] <= r1 if est is not zs or zs["epoch"] else dl <= 0 <= dh
        wrong = lo > 0 and dh < 0
        inside += within
        claims += wrong
        lines.append(
            f"| {r['src']} -> {r['tgt']} | {r['task']} | {which} | {est['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
            f"{r0:+.3f} to {r1:+.3f} | {d['diff']:+.3f} [{dl:+.3f}, {dh:+.3f}] | {'yes' if within else 'no'} | "
            f"{'YES' if wrong else 'no'} |"
        )
    lines.append("")
    lines.append(
        f"in range: the measured gain lies in the per-task range of the inner folds (where unseen tasks "
        f"get role: of role over depth on the training tasks; where they get depth: its paired interval "
        f"holds 0), {inside} of {len(cells)} cells; a claimed gain (interval above 0) where "
        f"the test shows a loss: {claims} of {len(cells)}."
    )
    return "\n".join(lines)


def val_check_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per LOTO cell, the map the val check chose on the held-out task's val prompts and
    its val gain over depth beside the gain measured on the test split (dfa-val - depth, paired);
    empty when no row carries a check."""
    cells = [r for r in rows if r["method"] == "dfa-val" and (r.get("val_check") or {}).get("candidates")]
    if not cells:
        return ""
    lines = [
        (
            "| pair | held-out task | val check chose | val gain over depth [95% CI] | val: above random | "
            "measured dfa-val - depth [95% CI] | claims a gain, test shows a loss |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    claims = 0
    for r in cells:
        vc, d = r["val_check"], r["paired"]["depth"]
        g, vr = vc["gain"], vc["vs_random"]
        dl, dh = d["ci"]
        wrong = g["ci"][0] > 0 and dh < 0
        claims += wrong
        lines.append(
            f"| {r['src']} -> {r['tgt']} | {r['task']} | {vc['chosen']} | {g['diff']:+.3f} "
            f"[{g['ci'][0]:+.3f}, {g['ci'][1]:+.3f}] | {'yes' if vr['ci'][0] > 0 else 'NO'} | "
            f"{d['diff']:+.3f} [{dl:+.3f}, {dh:+.3f}] | {'YES' if wrong else 'no'} |"
        )
    lines.append("")
    lines.append(
        "val check: the held-out task's own val prompts choose among the run's epoch maps and their "
        "blends toward the start, against depth (`dfa.experiments.val_check`; capped CPR; the val "
        f"gain is the best of several candidates, so optimistic). A claimed gain where the test shows a loss: "
        f"{claims} of {len(cells)}."
    )
    return "\n".join(lines)
