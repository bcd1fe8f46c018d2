"""A simulation run: one snapshot, two catalogs, every account cycle priced twice.

1. ``snapshot_repo.read`` in one read-only REPEATABLE READ transaction; the baseline is the
   catalog in force, the candidate that catalog with the candidate file laid over it.
2. The usage of the simulated cycles is streamed by binary COPY and rated under both
   catalogs batch by batch (``usage``), summed per account, cycle, currency, zone and kind.
3. Each account cycle is priced like a bill run (``billing.drafting.compute_all``: recurring
   fees, usage pricing, discounts, taxes) under each scenario, and the baseline is checked
   against what the stored invoices of those cycles say.
4. ``report.build`` compares the two.

The CPU work of a batch runs in a thread (numpy and the kernel release the GIL), so a
server's event loop keeps serving while a simulation runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.billing import drafting, inputs_repo
from billing_oss.server.billing.model import (
    Account,
    Adjustment,
    Discount,
    InvoiceDraft,
    Settings,
    Subscription,
    UsageGroup,
)
from billing_oss.server.billing.periods import Cycle, cycle, parse_period
from billing_oss.server.rating import NativeRater
from billing_oss.server.simulation import candidate as candidates
from billing_oss.server.simulation import snapshot_repo, usage
from billing_oss.server.simulation.candidate import Scenario
from billing_oss.server.store.pool import Connection

BATCH = 1 << 20  # records per rated batch: bounds memory whatever the period's size
PRICE_BATCH = 500  # accounts per priced batch
ReadProgress = Callable[[int], None]  # records read so far
# What pricing one account cycle costs in records read (perf/README's simulation row: 1 M
# records read at 25 k/s beside 20 k cycles priced in ~9.5 s): how much of the work a cycle
# is worth in the percentage a running simulation reports.
CYCLE_WEIGHT = 100


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running simulation is: records read of those expected (the charged records of
    its window in the analytics rollups, counted before the read), then account cycles
    priced under both catalogs."""

    phase: str  # "reading" | "pricing"
    records_read: int
    records_expected: int
    cycles_priced: int
    cycles: int

    @property
    def percent(self) -> Decimal:
        """The share of the work done, 0–99.9 (100 is for a finished simulation): records
        read and cycles priced, a cycle weighing ``CYCLE_WEIGHT`` records. More records
        than expected (usage not charged yet) count as the expected ones."""
        total = self.records_expected + CYCLE_WEIGHT * self.cycles
        done = (min(self.records_read, self.records_expected)
                + CYCLE_WEIGHT * min(self.cycles_priced, self.cycles))
        if total <= 0:
            return Decimal(0)
        return min(Decimal(done * 1000 // total) / 10, Decimal("99.9"))


Stages = Callable[[Progress], None]  # called from the event loop and from pricing's thread


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """What to simulate. Periods are billing periods ``YYYY-MM``, both included."""

    candidate: dict[str, Any]
    period_from: str
    period_to: str
    accounts: list[str] | None = None
    segment: dict[str, str] | None = None  # account attribute -> value
    by: list[str] = []  # account attributes to break the change down by
    shock_percent: Decimal = Decimal(20)
    top: int = 10
    # An account cycle whose candidate inputs equal the baseline's takes the baseline's
    # drafts; False prices every cycle under both (the faithfulness tests do both).
    reuse_unchanged: bool = True


class Priced(msgspec.Struct):
    """One scenario's drafts by (account, period, currency) and its usage totals."""

    drafts: dict[tuple[str, str, str], InvoiceDraft]
    totals: usage.Totals


class Outcome(msgspec.Struct):
    request: Request
    periods: list[str]
    snap: snapshot_repo.Snapshot
    accounts: list[Account]
    baseline: Priced
    candidate: Priced
    products: dict[str, str]  # account -> baseline product (its latest subscription's)
    gaps: dict[tuple[str, str], tuple[int, int]]  # (reason, currency) -> records, at stake
    slots: usage.Slots
    records: int
    outside: int  # records of the accounts outside their simulated cycles
    candidate_digest: str
    read_s: float
    elapsed_s: float


def periods_between(first: str, last: str) -> list[str]:
    try:
        y, m = parse_period(first)
        end = parse_period(last)
    except Exception as exc:
        raise InvalidRequest(f"periods: {exc}") from None
    out = []
    while (y, m) <= end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    if not out:
        raise InvalidRequest(f"--to {last} is before --from {first}")
    if len(out) > 36:
        raise InvalidRequest("a simulation covers at most 36 periods")
    return out


async def simulate(conn: Connection, request: Request, settings: Settings,
                   progress: ReadProgress | None = None,
                   stages: Stages | None = None) -> Outcome:
    """``progress``: records read so far; ``stages``: the ``Progress`` of the whole run."""
    started = time.perf_counter()
    periods = periods_between(request.period_from, request.period_to)
    await snapshot_repo.begin(conn)
    try:
        snap = await snapshot_repo.read(conn, periods)
        base = candidates.baseline(snap)
        cand = candidates.overlay(snap, request.candidate)
        accounts = _selected(snap.accounts, snap.closed, request)
        run = _Run(accounts, periods, base, cand)
        query = snapshot_repo.copy_query(_rfc3339(run.window[0]), _rfc3339(run.window[1]),
                                 None if len(accounts) == len(snap.accounts)
                                 else [a.account_id for a in accounts])
        subset = None if len(accounts) == len(snap.accounts) else [
            a.account_id for a in accounts]
        expected = (await snapshot_repo.expected_records(conn, run.window[0], run.window[1],
                                                         subset) if stages else 0)
        cycles = 2 * len(accounts) * len(periods)  # each priced under both catalogs

        def at(phase: str, cycles_priced: int = 0) -> None:
            if stages is not None:
                stages(Progress(phase=phase, records_read=run.records,
                                records_expected=expected, cycles_priced=cycles_priced,
                                cycles=cycles))

        at("reading")
        stream = usage.RowStream(BATCH)
        # One batch is rated in a thread while PostgreSQL sends the next: at most two
        # batches are held, and the COPY waits (backpressure) while both are.
        pending: asyncio.Future[None] | None = None

        async def sink(data: bytes) -> None:
            nonlocal pending
            for rows in stream.feed(data):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(run.add, rows))
                if progress is not None:
                    progress(run.records)
                at("reading")

        try:
            await conn.copy_from_query(query, output=sink, format="binary")
        finally:
            if pending is not None:
                await pending
        for rows in stream.finish():
            await asyncio.to_thread(run.add, rows)
        at("reading")  # every record read
    finally:
        await conn.execute("ROLLBACK")
    read_s = time.perf_counter() - started
    done = 0

    def priced_some(n: int) -> None:
        nonlocal done
        done += n
        at("pricing", done)

    at("pricing")
    # In a thread: the event loop stays free (a server's other requests, the progress
    # writes) while the cycles are priced.
    priced = await asyncio.to_thread(_price, run, base, run.base_totals, snap, settings,
                                     None, priced_some)
    baseline = Priced(priced.drafts, run.base_totals)
    candidate = Priced((await asyncio.to_thread(
        _price, run, cand, run.cand_totals, snap, settings,
        priced if request.reuse_unchanged else None, priced_some)).drafts, run.cand_totals)
    return Outcome(
        request=request, periods=periods, snap=snap, accounts=accounts, baseline=baseline,
        candidate=candidate, products=_products(base, accounts), gaps=run.gap_table(),
        slots=run.slots, records=run.records, outside=run.outside,
        candidate_digest=candidates.digest(request.candidate), read_s=read_s,
        elapsed_s=time.perf_counter() - started)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _selected(accounts: list[Account], closed: set[str], request: Request) -> list[Account]:
    """The accounts a bill run would bill (not closed), narrowed as asked."""
    chosen = [a for a in accounts if a.account_id not in closed]
    if request.accounts is not None:
        wanted = set(request.accounts)
        unknown = sorted(wanted - {a.account_id for a in accounts})
        if unknown:
            raise InvalidRequest(f"no account {', '.join(unknown[:5])}")
        chosen = [a for a in chosen if a.account_id in wanted]
    for key, value in (request.segment or {}).items():
        chosen = [a for a in chosen if str(a.attrs.get(key, "")) == value]
    return chosen


class _Run:
    """The streaming part: per batch, rate under both catalogs and add up."""

    def __init__(self, accounts: list[Account], periods: list[str], base: Scenario,
                 cand: Scenario) -> None:
        self.accounts, self.periods = accounts, periods
        self.cycles = [[cycle(p, a.billing_day, a.timezone) for p in periods] for a in accounts]
        self.bounds = np.array(
            [[_us(c.start) for c in cs] + [_us(cs[-1].end)] for cs in self.cycles]
            or np.zeros((0, len(periods) + 1)), np.int64).reshape(len(accounts),
                                                                  len(periods) + 1)
        self.window = (min((cs[0].start for cs in self.cycles), default=_EPOCH),
                       max((cs[-1].end for cs in self.cycles), default=_EPOCH))
        self.slots = usage.Slots()
        self.base_rater, self.cand_rater = NativeRater(base.catalog), NativeRater(cand.catalog)
        self.base_map = usage.SlotMap.build(self.base_rater, self.slots)
        self.cand_map = usage.SlotMap.build(self.cand_rater, self.slots)
        self.base_plans = _plans(base, self.base_rater, accounts)
        self.cand_plans = _plans(cand, self.cand_rater, accounts)
        self.n_slots = len(self.slots.currencies) * len(self.slots.zones) * len(usage.KINDS)
        cells = len(accounts) * len(periods) * max(self.n_slots, 1)
        self.base_totals = usage.Totals.empty(cells)
        self.cand_totals = usage.Totals.empty(cells)
        n_cur = max(len(self.slots.currencies), 1)
        self.gap_records = np.zeros((usage.N_STATUS, n_cur), np.int64)
        self.gap_stake = np.zeros((usage.N_STATUS, n_cur), np.int64)
        self.records = 0
        self.outside = 0

    def add(self, rows: npt.NDArray[np.void]) -> None:
        cols = usage.Columns.of(rows)
        n_cycles = len(self.periods)
        position = np.zeros(len(cols), np.int64)
        for j in range(n_cycles + 1):
            position += cols.event_us >= self.bounds[cols.account, j]
        inside = (position >= 1) & (position <= n_cycles)
        cell_base = np.where(inside, (cols.account.astype(np.int64) * n_cycles + position - 1)
                             * self.n_slots, -1)
        base = usage.rate(self.base_rater, self.base_plans, self.base_map, self.slots, cols)
        cand = usage.rate(self.cand_rater, self.cand_plans, self.cand_map, self.slots, cols)
        usage.add(self.base_totals, base, cell_base, cols.quantity)
        usage.add(self.cand_totals, cand, cell_base, cols.quantity)
        # Coverage: what the candidate cannot rate, with what the baseline charged for it.
        gap = inside & (cand.status != 0)
        charged = gap & (base.status == 0)
        np.add.at(self.gap_records, (cand.status[gap], base.currency[gap]), 1)
        np.add.at(self.gap_stake, (cand.status[charged], base.currency[charged]),
                  base.amount[charged])
        self.records += len(cols)
        self.outside += int((~inside).sum())

    def gap_table(self) -> dict[tuple[str, str], tuple[int, int]]:
        out = {}
        for status, reason in usage.REASONS.items():
            for c, code in enumerate(self.slots.currencies):
                if self.gap_records[status, c]:
                    out[reason, code] = (int(self.gap_records[status, c]),
                                         int(self.gap_stake[status, c]))
        return out


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _us(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def _plans(scenario: Scenario, rater: NativeRater,
           accounts: Sequence[Account]) -> usage.Plans:
    index = rater.compiled.tariff_index
    by_account: dict[str, list[tuple[int, int | None, int]]] = defaultdict(list)
    for s in scenario.subscriptions:
        if s.tariff_id in index:
            by_account[s.account_id].append(
                (_us(s.valid_from), None if s.valid_to is None else _us(s.valid_to),
                 index[s.tariff_id]))
    return usage.Plans.build([by_account.get(a.account_id, []) for a in accounts])


def _products(scenario: Scenario, accounts: Sequence[Account]) -> dict[str, str]:
    latest = {s.account_id: s.product for s in scenario.subscriptions}
    return {a.account_id: latest.get(a.account_id) or "(none)" for a in accounts}


class _Priced(msgspec.Struct):
    drafts: dict[tuple[str, str, str], InvoiceDraft]
    inputs: dict[tuple[int, int], Any]  # (account number, cycle) -> what priced it
    tax_rates: Any


def _price(run: _Run, scenario: Scenario, totals: usage.Totals, snap: snapshot_repo.Snapshot,
           settings: Settings, same_as: _Priced | None = None,
           priced: Callable[[int], None] = lambda cycles: None) -> _Priced:
    """Every account cycle priced as a bill run would: ``drafting.compute_all`` on inputs
    built from the rated sums instead of the stored charges. An account cycle whose inputs
    equal those ``same_as`` priced (same usage groups, plans, discounts, adjustments, tax
    rates) takes its drafts from there: the computation is a function of them."""
    groups = _groups(run, totals)
    currencies: dict[tuple[int, int], list[str]] = defaultdict(list)
    for number, cycle_number, currency in groups:
        currencies[number, cycle_number].append(currency)
    subscriptions = _subscriptions(scenario, run.accounts)
    discounts: dict[str | None, list[Discount]] = defaultdict(list)
    for _, d, owner in scenario.discounts:
        discounts[owner].append(d)
    adjustments = _adjustments(run, snap)
    out = _Priced({}, {}, scenario.tax_rates)
    reusable = same_as is not None and same_as.tax_rates == scenario.tax_rates
    earlier: dict[tuple[str, str], list[tuple[tuple[str, str, str], InvoiceDraft]]] = (
        defaultdict(list))
    for k, known in (same_as.drafts.items() if same_as is not None else ()):
        earlier[k[0], k[1]].append((k, known))
    everyone = tuple(discounts.get(None, ()))
    for p, period in enumerate(run.periods):
        todo = []
        for i, account in enumerate(run.accounts):
            key = account.account_id
            used = (tuple((cur, tuple(groups[i, p, cur])) for cur in currencies.get((i, p), ())),
                    tuple(subscriptions.get(key, ())), everyone, tuple(discounts.get(key, ())),
                    tuple(adjustments[p].get(key, ())))
            out.inputs[i, p] = used
            if reusable and same_as is not None and same_as.inputs.get((i, p)) == used:
                out.drafts.update(earlier.get((key, period), ()))
            else:
                todo.append(i)
        priced(len(run.accounts) - len(todo))
        # compute_all looks an account's currencies up in the whole batch: batches of a
        # bill run's size keep that linear in the number of accounts.
        for first in range(0, len(todo), PRICE_BATCH):
            chunk = todo[first:first + PRICE_BATCH]
            batch = inputs_repo.BatchInputs(
                accounts={run.accounts[i].account_id: run.accounts[i] for i in chunk},
                cycles={run.accounts[i].account_id: run.cycles[i][p] for i in chunk},
                usage={(run.accounts[i].account_id, cur): groups[i, p, cur]
                       for i in chunk for cur in currencies.get((i, p), ())},
                subscriptions=subscriptions, adjustments=adjustments[p],
                discounts=dict(discounts), finalised=set())
            for draft in drafting.compute_all(batch, settings, scenario.tax_rates):
                if draft.lines:
                    out.drafts[draft.account_id, period, draft.currency] = draft
            priced(len(chunk))
    return out


def _groups(run: _Run, totals: usage.Totals) -> dict[tuple[int, int, str], list[UsageGroup]]:
    """(account number, cycle number, currency) -> usage groups, from the non-empty cells."""
    out: dict[tuple[int, int, str], list[UsageGroup]] = defaultdict(list)
    n_zones, n_kinds, n_cycles = len(run.slots.zones), len(usage.KINDS), len(run.periods)
    for cell in np.flatnonzero(totals.count).tolist():
        owner, slot = divmod(cell, run.n_slots)
        account, period = divmod(owner, n_cycles)
        rest, kind = divmod(slot, n_kinds)
        currency, zone = divmod(rest, n_zones)
        code = run.slots.currencies[currency]
        quantity = Decimal(int(totals.quantity[cell]))
        if usage.KINDS[kind] == "event":
            quantity = quantity.scaleb(-6).normalize()
        out[account, period, code].append(UsageGroup(
            currency=code, service=usage.KINDS[kind], zone=run.slots.zones[zone],
            charges=int(totals.count[cell]), amount_micros=int(totals.amount[cell]),
            quantity=quantity))
    return out


def _subscriptions(scenario: Scenario,
                   accounts: Sequence[Account]) -> dict[str, list[Subscription]]:
    wanted = {a.account_id for a in accounts}
    out: dict[str, list[Subscription]] = defaultdict(list)
    for s in scenario.subscriptions:
        product = scenario.products.get(s.product)
        if s.account_id in wanted and product is not None:
            out[s.account_id].append(Subscription(
                subscription_id=s.subscription_id, product=product, valid_from=s.valid_from,
                valid_to=s.valid_to))
    return dict(out)


def _adjustments(run: _Run, snap: snapshot_repo.Snapshot) -> list[dict[str, list[Adjustment]]]:
    """Per simulated cycle: the adjustments its invoice billed, or, for a cycle not yet
    invoiced, those not billed yet and booked before its end (on the first such cycle)."""
    out: list[dict[str, list[Adjustment]]] = [defaultdict(list) for _ in run.periods]
    for i, account in enumerate(run.accounts):
        invoiced = {p for p in run.periods
                    if any(k[0] == account.account_id and k[1] == p for k in snap.invoiced)}
        for adjustment, created, billed_in in snap.adjustments.get(account.account_id, []):
            if billed_in is not None:
                if billed_in in run.periods:
                    out[run.periods.index(billed_in)][account.account_id].append(adjustment)
                continue
            for p, c in enumerate(run.cycles[i]):
                if run.periods[p] not in invoiced and created < c.end:
                    out[p][account.account_id].append(adjustment)
                    break
    return [dict(d) for d in out]


def cycles_of(outcome: Outcome) -> Mapping[str, list[Cycle]]:
    return {a.account_id: [cycle(p, a.billing_day, a.timezone) for p in outcome.periods]
            for a in outcome.accounts}
