"""Jobs: bill runs, rerates and simulations with their progress; launch a simulation (the
API's own function, so it is queued and audited alike) and read its result, winners and
losers charted."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import web

from billing_oss.core.errors import BillingError
from billing_oss.core.money import parse_micros
from billing_oss.server.console import repo
from billing_oss.server.console.web import actor, field, needs, pool, render
from billing_oss.server.http import simulations as simulations_api
from billing_oss.server.http.keys import SIMULATION_WAKE
from billing_oss.server.http.pagination import decode_cursor, encode_cursor
from billing_oss.server.simulation import repo as simulation_repo

PAGE = 20
MAX_CANDIDATE_BYTES = 2_000_000


async def jobs(request: web.Request) -> web.Response:
    return render(request, "jobs.html", {
        **await _lists(request), "form": {"from": "", "to": "", "candidate": "{}"},
        "message": None})


async def _lists(request: web.Request) -> dict[str, Any]:
    """The three lists, newest first, each paged by its own cursor."""
    out: dict[str, Any] = {}
    for name, key, read in (
            ("simulations", "simulation_id", repo.simulations),
            ("bill_runs", "bill_run_id", repo.bill_runs),
            ("rerates", "rerate_job_id", repo.rerate_jobs)):
        before = decode_cursor(request.query.get(f"{name}_cursor"), tuple[int])
        rows = await read(pool(request), before[0] if before else None, PAGE)
        out[name] = rows[:PAGE]
        out[f"{name}_next"] = encode_cursor((rows[PAGE - 1][key],)) if len(rows) > PAGE \
            else None
    return out


@needs("operator")
async def launch(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {k: field(form, k) for k in ("from", "to", "candidate")}
    candidate_text = str(fields["candidate"]).strip() or "{}"
    try:
        if len(candidate_text) > MAX_CANDIDATE_BYTES:
            raise ValueError("the candidate catalog is larger than 2 MB")
        body = msgspec.convert({
            "candidate": json.loads(candidate_text), "from": str(fields["from"]).strip(),
            **({"to": str(fields["to"]).strip()} if str(fields["to"]).strip() else {})},
            simulations_api.SimulationRequest)
        stored = await simulations_api.launch(
            pool(request), request.config_dict.get(SIMULATION_WAKE), actor(request), body)
    except (ValueError, msgspec.ValidationError) as exc:
        return await _refused(request, fields, str(exc))
    except BillingError as exc:
        return await _refused(request, fields, exc.message)
    raise web.HTTPSeeOther(f"/console/simulations/{stored.simulation_id}")


async def _refused(request: web.Request, fields: dict[str, Any], message: str) -> web.Response:
    return render(request, "jobs.html", {
        **await _lists(request), "form": fields,
        "message": f"The simulation was not queued: {message}"}, status=422)


async def simulation(request: web.Request) -> web.Response:
    return render(request, "simulation.html", await _simulation(request))


async def simulation_progress(request: web.Request) -> web.Response:
    context = await _simulation(request)
    context["htmx"] = True
    return render(request, "simulation_state.html", context)


async def _simulation(request: web.Request) -> dict[str, Any]:
    stored = await simulation_repo.get(pool(request), int(request.match_info["simulation_id"]))
    return {"sim": stored, "result": _view(stored.result) if stored.result else None,
            "htmx": False}


def _view(result: dict[str, Any]) -> dict[str, Any]:
    """The stored report with its decimal strings as micro-units, for the money filter."""
    def micros(text: str | None) -> int | None:
        return parse_micros(text) if text is not None else None

    totals = [{"currency": t["currency"], "change_percent": t["change_percent"],
               **{side: {k: micros(v) for k, v in t[side].items()}
                  for side in ("baseline", "candidate", "change")}}
              for t in result.get("totals", [])]
    distributions = []
    for d in result.get("distribution", []):
        distributions.append({
            "currency": d["currency"], "accounts": d["accounts"], "unchanged": d["unchanged"],
            "shock": d["shock"],
            "chart": {"labels": [h["bin"] for h in d["histogram"]],
                      "accounts": [h["accounts"] for h in d["histogram"]]},
            "winners": [_row(r) for r in d["top_decreases"]],
            "losers": [_row(r) for r in d["top_increases"]]})
    gaps = [{**g, "at_stake": micros(g["at_stake"])}
            for g in (result.get("coverage") or {}).get("candidate_gaps", [])]
    return {"totals": totals, "distribution": distributions, "gaps": gaps,
            "manifest": result.get("manifest", {})}


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"account_id": r["account_id"], "change_percent": r["change_percent"],
            **{k: parse_micros(r[k]) for k in ("baseline", "candidate", "change")}}


def register(app: web.Application) -> None:
    app.router.add_get("/jobs", jobs)
    app.router.add_post("/simulations", launch)
    app.router.add_get(r"/simulations/{simulation_id:\d{1,18}}", simulation)
    app.router.add_get(r"/fragments/simulations/{simulation_id:\d{1,18}}", simulation_progress)
