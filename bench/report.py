"""The bench's outputs: one printed table (Markdown, pasted into the README), the JSON record, a PNG chart."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from bench import http_boot, shared_store

TFTP_COLUMNS = [("b512", "curl 512"), ("b1468", "curl 1468"), ("b65464", "curl 65464"),
                ("b1468", "atftp 1468"), ("b1468w16", "atftp 1468 w16")]
"""(fetch key, header) of the single-stream columns; the two b1468 columns differ by client."""


def _fmt(value: float | None, spec: str = ".0f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def _fetch(t: dict[str, Any], client: str, key: str) -> dict[str, Any] | None:
    for f in t.get("fetches", []):
        fkey = f"b{f['blksize']}" + (f"w{f['windowsize']}" if f["windowsize"] > 1 else "")
        if f["client"] == client and fkey == key and f["ok"]:
            return dict(f)
    return None


def _p99(run: dict[str, Any] | None) -> str:
    if not run:
        return "n/a"
    return f"{_fmt(run.get('do_p99_ms'), '.2f')} / {_fmt(run.get('ra_p99_ms'), '.2f')} ({run['rate']:,}/s)"


def _mib_s(t: dict[str, Any], client: str, key: str) -> float | None:
    f = _fetch(t, client, key)
    return float(f["mib_s"]) if f else None


def _paired(doc: dict[str, Any], key: str, first: str, second: str) -> tuple[tuple[float, float], str] | None:
    """Two set-ups' mean CPU per DORA from `doc[key]` (`dhcp.paired_cpu`), and how they were run; None when
    either is missing."""
    paired = doc.get(key) or {}
    cost = paired.get("cpu_ms_per_dora") or {}
    if not (cost.get(first) and cost.get(second)):
        return None
    rates = " and ".join(f"{r:,}" for r in paired["rates"])
    return (cost[first], cost[second]), f"{rates} DORA/s ({paired['rounds']} rounds, ABBA)"


def ratios(doc: dict[str, Any]) -> dict[str, str]:
    """The headline ratios (ztp over a peer; for times, the peer over ztp so that > 1 means ztp is better)."""
    out: dict[str, str] = {}
    dhcp = {d["server"]: d for d in doc.get("dhcp", [])}
    z = dhcp.get("ztp", {}).get("max_sustainable_dora_s")
    for peer in ("kea", "dnsmasq"):
        if peer in dhcp:
            out[f"DHCP DORA/s ztp/{peer}"] = _ratio(z, dhcp[peer].get("max_sustainable_dora_s"))
    if "ztp-info" in dhcp:
        out["DHCP DORA/s ztp at info / at warning"] = _ratio(dhcp["ztp-info"].get("max_sustainable_dora_s"), z)
    paired = (doc.get("dhcp_info_cpu") or {}).get("cpu_ms_per_dora") or {}
    if paired.get("ztp") and paired.get("ztp-info"):
        out["DHCP ztp CPU per DORA at warning / at info (paired runs)"] = _ratio(paired["ztp"], paired["ztp-info"])
    if "ztp-compiled" in dhcp:
        zc = dhcp["ztp-compiled"].get("max_sustainable_dora_s")
        out["DHCP DORA/s ztp compiled / pure"] = _ratio(zc, z)
        if "kea" in dhcp:
            out["DHCP DORA/s ztp compiled/kea"] = _ratio(zc, dhcp["kea"].get("max_sustainable_dora_s"))
    versus = (doc.get("dhcp_kea_cpu") or {}).get("cpu_ms_per_dora") or {}
    if versus.get("ztp-compiled") and versus.get("kea"):
        out["DHCP CPU per DORA kea / ztp compiled (paired runs)"] = _ratio(versus["kea"], versus["ztp-compiled"])
    if "ztp-compiled-info" in dhcp and "kea" in dhcp:
        out["DHCP DORA/s ztp compiled at info / kea"] = _ratio(dhcp["ztp-compiled-info"].get("max_sustainable_dora_s"),
                                                               dhcp["kea"].get("max_sustainable_dora_s"))
    tftp = {t["server"]: t for t in doc.get("tftp", [])}
    if "ztp" in tftp and "tftpd-hpa" in tftp:
        zt, pt = tftp["ztp"], tftp["tftpd-hpa"]
        # The pure build, and the build `pip install .` gives (lock-step only: issue 14, item 5).
        for name, what, streams in (("ztp", "ztp", TFTP_COLUMNS),
                                    ("ztp-compiled", "ztp compiled", [c for c in TFTP_COLUMNS if "w16" not in c[0]])):
            for key, header in streams if name in tftp else []:
                client = header.split()[0]
                zf, pf = _mib_s(tftp[name], client, key), _mib_s(pt, client, key)
                if zf or pf:
                    out[f"TFTP {header} {what}/tftpd-hpa"] = _ratio(zf, pf)
        out["TFTP ztp windowsize 16 / tftpd-hpa lock-step (atftp 1468)"] = _ratio(
            _mib_s(zt, "atftp", "b1468w16"), _mib_s(pt, "atftp", "b1468"))
    zb = (tftp.get("ztp", {}).get("burst") or {}).get("wall_s")
    for peer in ("tftpd-hpa", "dnsmasq"):
        pb = (tftp.get(peer, {}).get("burst") or {}).get("wall_s")
        if zb and pb:
            out[f"TFTP burst wall {peer}/ztp"] = _ratio(pb, zb)
    storm = {s["server"]: s for s in doc.get("storm", [])}
    if "ztp" in storm and "dnsmasq" in storm:
        out["boot storm wall dnsmasq/ztp"] = _ratio(storm["dnsmasq"].get("wall_s"), storm["ztp"].get("wall_s"))
    return out


def table(doc: dict[str, Any]) -> str:
    """Markdown tables of every section plus the ratios."""
    m = doc["machine"]
    lines = [f"### ztp bench {doc['date']}{' (quick)' if doc.get('quick') else ''}", "",
             f"Machine: {m['cpu']} x{m['cores']}, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
             f"peers: {', '.join(f'{k} {v}' for k, v in m.get('peers', {}).items())}. "
             f"Background load at start: {doc.get('background_busy_pct', 'n/a')} % of one core.", ""]
    if doc.get("dhcp"):
        s = doc["settings"]["dhcp"]
        lines += [f"**DHCP** - perfdhcp DORA as a relay, {s['seconds']} s per rate, {s['clients']} clients, /16 pool, "
                  "empty lease database per run; max sustainable = highest rate with < 1 % incomplete exchanges and "
                  "99 % of the DISCOVERs asked for sent; "
                  "rows swept twice (ABBA order) show the better sweep, each sweep's max in brackets.", "",
                  "| server | max DORA/s | avg latency D-O / R-A (ms) | max latency (ms) | server CPU | CPU per DORA "
                  "| p99 D-O / R-A at 80 % of max (ms) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for d in doc["dhcp"]:
            best = d.get("at_max")
            if d.get("error") or not best:
                lines.append(f"| {d['label']} | {d['max_sustainable_dora_s'] or 'n/a'} | n/a | n/a | n/a | "
                             f"{d.get('error') or 'no passing rate'} | n/a |")
                continue
            per = 10 * best["server_cpu_pct"] / best["dora_s"] if best["dora_s"] else None
            sweeps = d.get("sweeps_max") or []
            both = f" ({' / '.join(f'{m:,}' for m in sweeps)})" if len(sweeps) > 1 else ""
            lines.append(
                f"| {d['label']} | {d['max_sustainable_dora_s']:,}{both} | {_fmt(best['do_avg_ms'], '.2f')} / "
                f"{_fmt(best['ra_avg_ms'], '.2f')} | {_fmt(max(best['do_max_ms'] or 0, best['ra_max_ms'] or 0), '.1f')}"
                f" | {best['server_cpu_pct']:.0f} % | {_fmt(per, '.3f')} ms | {_p99(d.get('at_80'))} |")
        lines.append("")
        each = [f"{d['label']} " + ", ".join(_p99(run) for run in d["sweeps_at_80"])
                for d in doc["dhcp"] if len(d.get("sweeps_at_80") or []) > 1]
        if each:
            lines += ["p99 D-O / R-A at 80 % of each sweep's max (ms): " + "; ".join(each) + ".", ""]
        info = _paired(doc, "dhcp_info_cpu", "ztp", "ztp-info")
        if info:
            (warning, at_info), how = info
            lines += [f"Info logging, paired: ztp at warning and at info run alternately at {how}: CPU per DORA "
                      f"{warning:.3f} ms at warning, {at_info:.3f} ms at info "
                      f"({100 * (at_info / warning - 1):+.1f} %).", ""]
        versus = _paired(doc, "dhcp_kea_cpu", "ztp-compiled", "kea")
        if versus:
            (compiled, kea), how = versus
            lines += [f"ztp compiled and Kea, paired: run alternately at {how}: CPU per DORA {compiled:.3f} ms ztp "
                      f"compiled (its lease writer process included), {kea:.3f} ms Kea (Kea / ztp "
                      f"{kea / compiled:.2f}x).", ""]
    if doc.get("tftp"):
        head = " | ".join(h for _, h in TFTP_COLUMNS)
        st = doc["settings"]["tftp"]
        pinned = st.get("cores")
        lines += [f"**TFTP** - one 32 MiB file, MiB/s ({st.get('pick', 'best')} of {st['repeats']}, the servers "
                  "taking turns stream by stream"
                  + (f", each server on core(s) {pinned[0]} and its client on core {pinned[1]}" if pinned else "")
                  + "; `w16` = windowsize 16, RFC 7440), and "
                  f"{st['burst']} simultaneous fetches of different ~8 KiB configs (one curl -Z).",
                  "", f"| server | {head} | burst ok | burst wall (s) | burst p95 (s) |",
                  "| --- |" + " ---: |" * (len(TFTP_COLUMNS) + 3)]
        for t in doc["tftp"]:
            cells = []
            for key, header in TFTP_COLUMNS:
                cells.append(_fmt(_mib_s(t, header.split()[0], key), ".1f"))
            b = t.get("burst") or {}
            lines.append(f"| {t['label']} | {' | '.join(cells)} | {b.get('ok', 'n/a')}/{b.get('clients', 'n/a')} | "
                         f"{_fmt(b.get('wall_s'), '.2f')} | {_fmt(b.get('p95_s'), '.3f')} |")
        lines.append("")
    if doc.get("storm") is not None:
        st = doc["settings"]["storm"]
        lines += [f"**Boot storm** - `ztp agent --count {st['devices']} --concurrency {st['concurrency']}` on one "
                  "interface (reserved address + own config per switch; the peer serves the same configs as files). "
                  "`served` = DHCP + TFTP time per device, without the agent's own address configuration.", "",
                  "| server | provisioned | failed | wrong config | all done (s) | p50 / p99 per device (s) | "
                  "served p50 / p99 (s) | server CPU |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in doc["storm"]:
            if s.get("error"):
                lines.append(f"| {s['label']} | n/a | n/a | n/a | n/a | n/a | n/a | {s['error'][:80]} |")
                continue
            failed = f"{s['failed']}" + (f" (kernel ARP table overflowed {s['neighbour_table_overflows']}x)"
                                         if s.get("neighbour_table_overflows") else "")
            lines.append(f"| {s['label']} | {s['provisioned']} | {failed} | {s['wrong_config']} | "
                         f"{_fmt(s['wall_s'], '.2f')} | {_fmt(s['p50_s'], '.2f')} / {_fmt(s['p99_s'], '.2f')} | "
                         f"{_fmt(s.get('served_p50_s'), '.3f')} / {_fmt(s.get('served_p99_s'), '.3f')} | "
                         f"{s['server_cpu_pct']:.0f} % |")
        lines.append("")
    r, mem = doc.get("render"), doc.get("memory")
    if r or mem:
        lines.append("**Rendering and memory** - " + "; ".join(filter(None, [
            r and (f"{r['configs_per_s']:,.0f} configs/s for the 48-port template ({r['ms_per_config']:.3f} ms, "
                   f"{r['bytes_per_config']:,} bytes each, one core)"),
            mem and (f"`ztp serve` RSS {mem['rss_empty_mib']} MiB empty, {mem['rss_loaded_mib']} MiB holding "
                     f"{mem['leases']:,} leases ({mem['bytes_per_lease']:.0f} bytes/lease)"),
        ])) + ".")
        lines.append("")
    http = doc.get("http")
    if http:
        lines.append("**HTTP boot vs TFTP** (`ztp serve` serving both; best of the repeats)")
        lines.append("")
        lines.append(http_boot.summary(http))
        lines.append("")
    costs = doc.get("chain")
    if costs:
        lines.append("**DHCP decision cost per packet** (handler chain + ledger in one process, no sockets; must "
                     "stay flat as the lease table grows) - " + "; ".join(
                         f"{c['leases']:,} leases: {c['us_per_dora']} us per DORA, {c['us_per_full_pool_discover']} us "
                         "per DISCOVER on a full pool" for c in costs) + ".")
        lines.append("")
    tl = doc.get("timeline")
    if tl:
        lines.append(f"**Device timeline cost** (in process, best of 3 over {tl['doras']:,} DORAs) - the packet path "
                     f"pays {tl['hook_us_per_packet']} us per request (one queue append); off it, "
                     f"{tl['drain_us_per_event']} us per event to classify and apply (every 0.25 s, on the loop) and "
                     f"{tl['store_us_per_event']} us per event to store (writer thread); "
                     f"{tl['events'] // max(1, tl['doras'])} events per DORA; DORA decided {tl['us_per_dora']} us "
                     f"bare, {tl['us_per_dora_recorded']} us "
                     "recorded.")
        lines.append("")
    shared = doc.get("shared")
    if shared:
        lines.append(shared_store.summary(shared))
        lines.append("")
    rat = doc.get("ratios") or {}
    if rat:
        lines.append("**Ratios** - " + "; ".join(f"{k} {v}" for k, v in rat.items()) + ".")
        lines.append("")
    prof = doc.get("profile")
    if prof and prof.get("by_self"):
        share = ", ".join(f"{k} {v} %" for k, v in prof.get("threads", {}).items())
        lines.append(f"**Profile** (py-spy --gil, ztp serve at {prof['load_rate']} DORA/s, {prof['samples']} samples; "
                     f"{share}) - event loop, self: "
                     + "; ".join(f"{h['function']} {h['self_pct']} %" for h in prof["by_self"][:8])
                     + ". Inclusive: " + "; ".join(f"{h['function']} {h['total_pct']} %" for h in prof["by_total"][:10])
                     + ".")
        lines.append("")
    return "\n".join(lines)


def chart(doc: dict[str, Any], path: Path) -> str | None:
    """A PNG with one panel per section; returns an error text instead when it cannot be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError as exc:
        return f"no chart: {exc} (pip install matplotlib)"
    try:
        _draw(doc, path)
    except Exception as exc:  # noqa: BLE001 - a chart problem must not lose the measured results
        return f"no chart: {type(exc).__name__}: {exc}"
    return None


def _draw(doc: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = {"ztp": "#2b7bba", "kea": "#999999", "dnsmasq": "#e08a2b", "tftpd-hpa": "#6a9f4a"}
    ax = axes[0]
    dhcp = doc.get("dhcp") or []
    names = [textwrap.fill(d["label"], 16) for d in dhcp]  # long labels side by side overlapped
    vals = [d["max_sustainable_dora_s"] or 0 for d in dhcp]
    bars = ax.bar(names, vals, color=[colors.get(d["server"], "#777") for d in dhcp])
    ax.tick_params(axis="x", labelsize=8)  # five servers' labels side by side
    ax.bar_label(bars, labels=[f"{v:,}" for v in vals])
    ax.set_title("DHCP: max sustainable DORA/s (<1% incomplete)")
    if any(vals):
        ax.set_yscale("log")
    ax = axes[1]
    tftp = doc.get("tftp") or []
    width = 0.8 / max(1, len(tftp))
    for i, t in enumerate(tftp):
        ys = []
        for key, header in TFTP_COLUMNS:
            f = _fetch(t, header.split()[0], key)
            ys.append(f["mib_s"] if f else 0)
        xs = [j + i * width for j in range(len(TFTP_COLUMNS))]
        ax.bar(xs, ys, width, label=t["label"], color=colors.get(t["server"], "#777"))
    ax.set_xticks([j + width * (len(tftp) - 1) / 2 for j in range(len(TFTP_COLUMNS))],
                  [h for _, h in TFTP_COLUMNS], fontsize=8)
    if tftp:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("TFTP: 32 MiB single stream, MiB/s")
    ax = axes[2]
    storm = [s for s in doc.get("storm") or [] if not s.get("error")]
    if storm:
        labels = [s["label"] for s in storm]
        walls = [s["wall_s"] or 0 for s in storm]
        bars = ax.bar(labels, walls, color=[colors.get(s["server"], "#777") for s in storm])
        ax.bar_label(bars, labels=[f"{w:.1f}s, {s['failed']} failed" for w, s in zip(walls, storm, strict=True)])
        ax.set_title(f"Boot storm: {storm[0]['devices']} devices, seconds until all provisioned")
    else:
        ax.set_title("Boot storm: n/a")
    m = doc["machine"]
    fig.suptitle(f"ztp bench {doc['date']} - {m['cpu']} x{m['cores']}, Linux {m['kernel']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(doc: dict[str, Any], path: Path) -> None:
    """The whole record, indented."""
    path.write_text(json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")
