"""Measures of a simulated day, per policy and per hour, as a markdown report and PNG charts.

Definitions (the report repeats them):
- served within 2 h: a worker arrived at most two hours after the request, over ALL requests
  (a refused or unfilled request counts as not served);
- refused at once: booking found nobody who could come in time (answered 409 at once);
- unfilled after booking: a job was opened, then nobody took it (the cascade ran out);
- promised at booking: booking told the resident "someone by `arrive_by`" (`jobs.promised`:
  only when at least PROMISE_MIN_CANDIDATES free workers could make it; otherwise the job is
  offered all the same and the promise comes with the accept);
- missed promise: of the jobs promised (at booking, or at the accept), those where nobody
  arrived by `arrive_by`: late arrivals plus promised jobs that went unfilled. An accept
  that queues the job behind the worker's current one promises nothing (its ETA hangs on
  when that job ends), so those count only if promised at booking;
- queued behind a job: requests taken by a worker finishing another job nearby, and the
  share of those with nobody at the door by `arrive_by` (late against an estimate);
- ETA error: actual arrival minus `estimated_arrival` as set at the accept;
- time to accept: first (winning) accept minus the request;
- utilization: time holding a job (accept to completion) over time online, in the window;
- earnings proxy: minutes on site (arrival to completion) per worker; money does not exist
  yet, so the spread (Gini) of these minutes stands for the spread of earnings.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .engine import Outcome, Record

PROMISE_S = 7200.0


def gini(values: Sequence[float]) -> float:
    """0 = everyone the same, 1 = one worker has everything."""
    xs = sorted(v for v in values if v >= 0)
    n = len(xs)
    total = sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n


def pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def overlap(intervals: Iterable[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(y, b) - max(x, a)) for x, y in intervals)


@dataclass
class Row:
    """One line of a table: a policy's day, or one of its hours."""

    label: str
    requests: int
    served_2h: float
    refused: float
    unfilled: float
    missed_promise: float
    missed_late: float
    missed_unfilled: float
    tta_median_s: float
    tta_p90_s: float
    door_median_min: float
    eta_err_mean_min: float
    eta_err_p90_min: float
    eta_late10_pct: float
    utilization: float
    promised_at_booking: float
    queued: float  # share of requests taken by a worker finishing another job nearby
    queued_late: float  # of those, the share with nobody at the door by arrive_by


def _record_measures(records: list[Record], outcome: Outcome) -> dict[str, float]:
    jobs = outcome.db_jobs
    n = len(records)
    served = refused = unfilled = opened = booked_promise = promised = late = broken = 0
    queued = queued_late = 0
    tta: list[float] = []
    eta_err: list[float] = []
    door: list[float] = []
    for r in records:
        if r.refused:
            refused += 1
            continue
        job = jobs.get(r.job_id) if r.job_id is not None else None
        if job is None:  # a batch row that never became a job (the report lists errors)
            continue
        opened += 1
        arrived = job["arrived_at"]
        unfilled += job["status"] == "unfilled"
        booked_promise += bool(r.promised)
        if arrived is not None:
            served += arrived - r.req.t_s <= PROMISE_S
            door.append((arrived - r.req.t_s) / 60)
            if r.eta_t is not None:
                eta_err.append((arrived - r.eta_t) / 60)
        if job["assigned_at"] is not None:
            tta.append(job["assigned_at"] - r.req.t_s)
        if job["was_queued"]:
            queued += 1
            queued_late += arrived is None or arrived > job["arrive_by"]
        # A promise is made at booking, or at the accept (not at one queueing the job
        # behind the worker's current one: that arrival is an estimate); a job never
        # promised that went unfilled was asked for, not broken.
        if r.promised or job["promised"]:
            promised += 1
            if arrived is None:
                broken += 1
            elif arrived > job["arrive_by"]:
                late += 1
    return {
        "n": n, "served": pct(served, n), "refused": pct(refused, n),
        "unfilled": pct(unfilled, n), "promised_at_booking": pct(booked_promise, opened),
        "missed": pct(late + broken, promised), "missed_late": pct(late, promised),
        "missed_unfilled": pct(broken, promised),
        "tta_med": quantile(tta, 0.5), "tta_p90": quantile(tta, 0.9),
        "door_med": quantile(door, 0.5),
        "eta_mean": statistics.fmean(eta_err) if eta_err else float("nan"),
        "eta_p90": quantile(eta_err, 0.9),
        "eta_late10": pct(sum(1 for e in eta_err if e > 10), len(eta_err)),
        "queued": pct(queued, n), "queued_late": pct(queued_late, queued),
    }


def utilization(outcome: Outcome, a: float, b: float) -> float:
    online = sum(overlap(w.online, a, b) for w in outcome.workers)
    busy = sum(overlap(w.busy, a, b) for w in outcome.workers)
    return pct(busy, online)


def row(label: str, records: list[Record], outcome: Outcome, a: float, b: float) -> Row:
    m = _record_measures(records, outcome)
    return Row(label, int(m["n"]), m["served"], m["refused"], m["unfilled"], m["missed"],
               m["missed_late"], m["missed_unfilled"], m["tta_med"], m["tta_p90"],
               m["door_med"],
               m["eta_mean"], m["eta_p90"], m["eta_late10"], utilization(outcome, a, b),
               m["promised_at_booking"], m["queued"], m["queued_late"])


def residents(outcome: Outcome) -> list[Record]:
    return [r for r in outcome.records if r.req.batch is None]


def batch_rows(outcome: Outcome) -> list[Record]:
    return [r for r in outcome.records if r.req.batch is not None]


def hourly(outcome: Outcome, start_s: float, end_s: float) -> list[Row]:
    rows = []
    h = math.floor(start_s / 3600)
    while h * 3600 < end_s:
        a, b = h * 3600.0, (h + 1) * 3600.0
        recs = [r for r in residents(outcome) if a <= r.req.t_s < b]
        rows.append(row(f"{h % 24:02d}:00", recs, outcome, max(a, start_s), min(b, end_s)))
        h += 1
    return rows


def by_candidates(outcome: Outcome, k: int) -> tuple[int, float, float]:
    """Jobs opened with k candidates at booking (3 meaning 3 or more): how many, the share
    nobody came to at all, and the share of broken promises among those promised."""
    records = [r for r in residents(outcome) if r.job_id in outcome.db_jobs
               and r.candidates is not None and min(r.candidates, 3) == k]
    m = _record_measures(records, outcome)
    gone = sum(1 for r in records if outcome.db_jobs[r.job_id]["arrived_at"] is None)
    return len(records), pct(gone, len(records)), m["missed"]


def breakdown(outcomes: list[Outcome], title: str, key: Callable[[Record], str]) -> str:
    """Where the misses are: served within 2 h (refused at once / unfilled after booking)."""
    names = sorted({key(r) for o in outcomes for r in residents(o)})
    lines = [f"\n### By {title}: served <=2 h % (refused % / unfilled %)\n\n| {title} | "
             "requests | " + " | ".join(o.policy.value for o in outcomes) + " |\n|---|---:|"
             + "---:|" * len(outcomes) + "\n"]
    for name in names:
        cells = []
        n = 0
        for o in outcomes:
            m = _record_measures([r for r in residents(o) if key(r) == name], o)
            n = int(m["n"])
            cells.append(f"{_f(m['served'], 0)} ({_f(m['refused'], 0)} / "
                         f"{_f(m['unfilled'], 0)})")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


@dataclass
class Fairness:
    workers: int
    gini_minutes: float
    gini_jobs: float
    util_median: float
    util_p10: float
    util_p90: float
    idle_share: float  # workers online who never got a job


def fairness(outcome: Outcome, a: float, b: float) -> Fairness:
    active = [w for w in outcome.workers if overlap(w.online, a, b) > 0]
    utils = [100 * overlap(w.busy, a, b) / overlap(w.online, a, b) for w in active]
    return Fairness(
        workers=len(active),
        gini_minutes=gini([w.work_s / 60 for w in active]),
        gini_jobs=gini([float(w.jobs) for w in active]),
        util_median=quantile(utils, 0.5), util_p10=quantile(utils, 0.1),
        util_p90=quantile(utils, 0.9),
        idle_share=pct(sum(1 for w in active if w.jobs == 0), len(active)))


def _f(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


HEAD = ("| {label} | requests | served <=2 h % | refused at once % | unfilled after booking % "
        "| promised at booking % | missed promise % (late / unfilled) | accept median s "
        "| accept p90 s "
        "| at the door median min | ETA error mean min | ETA error p90 min | >10 min late % "
        "| utilization % | queued behind a job % (late %) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")


def table_line(r: Row) -> str:
    return (f"| {r.label} | {r.requests} | {_f(r.served_2h)} | {_f(r.refused)} | "
            f"{_f(r.unfilled)} | {_f(r.promised_at_booking)} | "
            f"{_f(r.missed_promise, 2)} ({_f(r.missed_late, 2)} / "
            f"{_f(r.missed_unfilled, 2)}) | {_f(r.tta_median_s, 0)} | {_f(r.tta_p90_s, 0)} | "
            f"{_f(r.door_median_min)} | "
            f"{_f(r.eta_err_mean_min)} | {_f(r.eta_err_p90_min)} | {_f(r.eta_late10_pct)} | "
            f"{_f(r.utilization)} | {_f(r.queued)} ({_f(r.queued_late)}) |\n")


def markdown(outcomes: list[Outcome], start_s: float, end_s: float, header: str,
             charts: list[str], notes: list[str]) -> str:
    out = [header, "\n## Summary (resident urgent requests)\n\n", HEAD.format(label="policy")]
    for o in outcomes:
        out.append(table_line(row(o.policy.value, residents(o), o, start_s, end_s)))
    out.append("\n### Workers: utilization and earnings spread (proxy)\n\n"
               "| policy | workers online | utilization median % (p10-p90) | never got a job % "
               "| Gini of on-site minutes | Gini of job count |\n"
               "|---|---:|---:|---:|---:|---:|\n")
    for o in outcomes:
        f = fairness(o, start_s, end_s)
        out.append(f"| {o.policy.value} | {f.workers} | {_f(f.util_median)} "
                   f"({_f(f.util_p10)}-{_f(f.util_p90)}) | {_f(f.idle_share)} | "
                   f"{_f(f.gini_minutes, 3)} | {_f(f.gini_jobs, 3)} |\n")
    out.append("\n### Promises by how many could come at booking\n\n"
               "Whether anyone *will* come is known only at an accept; booking sees only "
               "who *could*. Jobs opened, by the number of candidates booking found (3 = "
               "3 or more): how many, the share nobody came to, and broken promises among "
               "those promised (at booking only with enough candidates, else at the "
               "accept):\n\n"
               "| policy | 1 candidate: jobs / nobody came % / missed promise % | 2: same "
               "| 3+: same |\n|---|---:|---:|---:|\n")
    for o in outcomes:
        cells = []
        for k in (1, 2, 3):
            jobs, gone, missed = by_candidates(o, k)
            cells.append(f"{jobs} / {_f(gone)} / {_f(missed)}")
        out.append(f"| {o.policy.value} | " + " | ".join(cells) + " |\n")
    for title, key in (("category", lambda r: r.req.slug),
                       ("neighbourhood", lambda r: r.req.hood)):
        out.append(breakdown(outcomes, title, key))
    if any(batch_rows(o) for o in outcomes):
        out.append("\n### Property-manager batches (same service in every policy)\n\n")
        out.append(HEAD.format(label="policy"))
        for o in outcomes:
            out.append(table_line(row(o.policy.value, batch_rows(o), o, start_s, end_s)))
    out.append("\n### Run\n\n| policy | wall s | CPU s (this process) | sim end | offers "
               "| declines | ignored | answers too late | pings | counters |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for o in outcomes:
        c = o.counters
        rest = ", ".join(f"{k}={v}" for k, v in sorted(c.items()) if k not in {
            "offers", "declines", "offers_ignored", "answers_too_late", "pings", "requests"})
        out.append(f"| {o.policy.value} | {o.wall_s:.0f} | {o.cpu_s:.0f} | "
                   f"{o.stop_t / 3600:.2f} h | "
                   f"{c['offers']} | {c['declines']} | {c['offers_ignored']} | "
                   f"{c['answers_too_late']} | {c['pings']} | {rest} |\n")
        for e in o.errors:
            out.append(f"\n**{o.policy.value}: {e}**\n")
    for o in outcomes:
        out.append(f"\n## Per hour: {o.policy.value}\n\n")
        out.append(HEAD.format(label="hour"))
        for r in hourly(o, start_s, end_s):
            out.append(table_line(r))
    if charts:
        out.append("\n## Charts\n\n")
        out.extend(f"![{Path(c).stem}]({Path(c).name})\n\n" for c in charts)
    if notes:
        out.append("\n## Notes\n\n")
        out.extend(f"- {n}\n" for n in notes)
    return "".join(out)


def charts(outcomes: list[Outcome], start_s: float, end_s: float, folder: Path) -> list[str]:
    """PNG charts (matplotlib, Agg backend); an empty list if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths: list[str] = []
    colours = {"nearest": "tab:red", "cascade": "tab:blue", "batched": "tab:green"}

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for o in outcomes:
        rows = hourly(o, start_s, end_s)
        ax.plot([int(r.label[:2]) for r in rows], [r.served_2h for r in rows], marker="o",
                label=o.policy.value, color=colours.get(o.policy.value))
    ax.set_xlabel("hour of day (request time)")
    ax.set_ylabel("requests served within 2 h (%)")
    ax.set_title("Served within two hours, by hour")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, folder / "served_2h_by_hour.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for o in outcomes:
        jobs = o.db_jobs
        err = [(jobs[r.job_id]["arrived_at"] - r.eta_t) / 60 for r in residents(o)
               if r.job_id is not None and r.eta_t is not None
               and jobs.get(r.job_id, {}).get("arrived_at") is not None]
        axes[0].hist(err, bins=60, range=(-30, 30), histtype="step", linewidth=1.5,
                     label=o.policy.value, color=colours.get(o.policy.value))
        promised = [(r.eta_t - r.req.t_s) / 60 for r in residents(o)
                    if r.eta_t is not None and r.job_id is not None
                    and jobs.get(r.job_id, {}).get("arrived_at") is not None]
        actual = [(jobs[r.job_id]["arrived_at"] - r.req.t_s) / 60 for r in residents(o)
                  if r.eta_t is not None and r.job_id is not None
                  and jobs.get(r.job_id, {}).get("arrived_at") is not None]
        axes[1].scatter(promised, actual, s=3, alpha=0.35, label=o.policy.value,
                        color=colours.get(o.policy.value))
    axes[0].set_xlabel("actual arrival - ETA given at accept (min)")
    axes[0].set_ylabel("jobs")
    axes[0].set_title("ETA error")
    axes[0].legend()
    axes[1].plot([0, 150], [0, 150], color="grey", linewidth=0.8)
    axes[1].axhline(120, color="black", linestyle="--", linewidth=0.8)
    axes[1].set_xlabel("promised arrival at accept (min after request)")
    axes[1].set_ylabel("actual arrival (min after request)")
    axes[1].set_title("Promised vs actual (dashed: the 2 h promise)")
    axes[1].legend(markerscale=4)
    paths.append(_save(fig, folder / "eta_promised_vs_actual.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for o in outcomes:
        tta = sorted(o.db_jobs[r.job_id]["assigned_at"] - r.req.t_s for r in residents(o)
                     if r.job_id is not None
                     and o.db_jobs.get(r.job_id, {}).get("assigned_at") is not None)
        if tta:
            ax.plot(tta, [100 * (i + 1) / len(tta) for i in range(len(tta))],
                    label=o.policy.value, color=colours.get(o.policy.value))
    ax.set_xscale("log")
    ax.set_xlabel("time from request to the winning accept (s, log)")
    ax.set_ylabel("accepted jobs (%)")
    ax.set_title("Time to accept (CDF)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    paths.append(_save(fig, folder / "time_to_accept.png"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for o in outcomes:
        active = [w for w in o.workers if overlap(w.online, start_s, end_s) > 0]
        utils = sorted(100 * overlap(w.busy, start_s, end_s) / overlap(w.online, start_s, end_s)
                       for w in active)
        axes[0].plot(utils, [100 * (i + 1) / len(utils) for i in range(len(utils))],
                     label=o.policy.value, color=colours.get(o.policy.value))
        minutes = sorted(w.work_s / 60 for w in active)
        total = sum(minutes) or 1.0
        cum = [0.0]
        for m in minutes:
            cum.append(cum[-1] + m / total)
        axes[1].plot([100 * i / len(minutes) for i in range(len(minutes) + 1)],
                     [100 * c for c in cum], label=f"{o.policy.value} (Gini "
                     f"{gini(minutes):.2f})", color=colours.get(o.policy.value))
    axes[0].set_xlabel("worker utilization (% of online time holding a job)")
    axes[0].set_ylabel("workers (%)")
    axes[0].set_title("Utilization (CDF over workers)")
    axes[0].legend()
    axes[1].plot([0, 100], [0, 100], color="grey", linewidth=0.8)
    axes[1].set_xlabel("workers, fewest on-site minutes first (%)")
    axes[1].set_ylabel("share of all on-site minutes (%)")
    axes[1].set_title("Earnings proxy: Lorenz curve of on-site minutes")
    axes[1].legend()
    paths.append(_save(fig, folder / "utilization_earnings.png"))
    return paths


def _save(fig: object, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return str(path)
