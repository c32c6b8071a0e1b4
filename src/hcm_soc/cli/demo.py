"""`hcm-soc demo`: run the whole pipeline as far as it exists, on the local Elasticsearch."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info


def demo(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="print the report as JSON")
) -> None:
    """Start the local Elasticsearch (unless HCM_SOC_ES_URL is set), install templates,
    read the bundled logs of city systems through the collectors and parsers, and show what was stored."""
    from dataclasses import asdict

    from hcm_soc.demo import run_demo

    app_ctx: AppContext = ctx.obj
    settings = app_ctx.settings
    report = run_demo(settings, info)
    if json_out:
        emit_json(asdict(report))
        return
    tz = ZoneInfo(settings.timezone)
    w = report.writer
    print(f"\nElasticsearch {report.es_version} at {report.es_url}")
    print(f"templates: {report.templates_written} written, {report.templates_current} already current")
    print(
        f"bundled logs: {report.events_in_sample} records ({report.parse_failures} unparsed, kept) -> "
        f"sent {w['sent']}, already stored {w['duplicates']}, "
        f"dead-lettered {w['dead_lettered']}, spooled {w['spooled']}"
    )
    print("\nevents stored per dataset:")
    emit_table(["dataset", "events"], sorted(report.counts.items()))
    print("\nfailed SSH logins by source (system.auth):")
    emit_table(["source.ip", "failures"], report.ssh_failures_by_source)
    print("\nsqlmap scans of the public-service portal (nginx.access):")
    emit_table(["source.ip", "requests"], report.web_attack_sources)
    if report.latest_ingested:
        ingested = datetime.fromisoformat(report.latest_ingested.replace("Z", "+00:00")).astimezone(tz)
        print(
            f"\nlatest event.ingested (set by Elasticsearch): {ingested:%Y-%m-%d %H:%M:%S %Z} ({settings.timezone})"
        )
