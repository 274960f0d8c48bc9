"""``/metrics``: the collector's counters and the fleet's state, in Prometheus' text format.
Read at scrape time from what already exists, through a private registry (two collectors in one process never collide).
Design notes: docs/collector-internals.md, "collector/alerts/metrics.py".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = ["FLEET_WINDOW_S", "SCORE_BUCKETS", "MetricsSource"]

FLEET_WINDOW_S = 900
SCORE_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


class MetricsSource:
    """A prometheus_client collector over one LookupService; ``render()`` is the /metrics body."""

    def __init__(self, service):
        self.service = service
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def describe(self):  # the families depend on the data; nothing to pre-declare
        return []

    def collect(self):
        yield from self._ingest()
        yield from self._fleet()
        yield from self._alerts()

    def _ingest(self):
        st = getattr(self.service, "stats", None)
        if st is None:
            return
        g = GaugeMetricFamily("cxpulse_ingest_streams_open", "Agent streams open now (connected agents)")
        g.add_metric([], st.streams_open)
        yield g
        c = CounterMetricFamily("cxpulse_ingest_batches", "Batches received, by outcome", labels=["result"])
        c.add_metric(["stored"], st.batches_stored)
        c.add_metric(["duplicate"], st.batches_duplicate)
        c.add_metric(["rejected"], st.batches_rejected)
        yield c
        c = CounterMetricFamily("cxpulse_ingest_samples_stored", "Samples committed to the store")
        c.add_metric([], st.samples_stored)
        yield c

    def _fleet(self):
        snap = self.service.fleet(FLEET_WINDOW_S)
        g = GaugeMetricFamily("cxpulse_agents_known", "Agents the store knows")
        g.add_metric([], snap["agents_total"])
        yield g
        g = GaugeMetricFamily("cxpulse_agents_active", "Agents that reported in the last 15 minutes")
        g.add_metric([], snap["agents_active"])
        yield g
        labels = GaugeMetricFamily(
            "cxpulse_agents_by_label", "Active agents per site and score label (15 min)", labels=["site", "label"]
        )
        for s in snap["sites"]:
            for lab, n in s["labels"].items():
                labels.add_metric([s["site"], lab], n)
        yield labels
        hist = HistogramMetricFamily(
            "cxpulse_agent_score", "Experience score of active agents (15 min), per site", labels=["site"]
        )
        by_site: dict[str, list[float]] = {}
        for a in snap["worst"]:
            if a["score"] is not None:
                by_site.setdefault(a["site"] or "(no site)", []).append(a["score"])
        for site, scores in sorted(by_site.items()):
            buckets = [(str(b), sum(1 for x in scores if x <= b)) for b in SCORE_BUCKETS]
            buckets.append(("+Inf", len(scores)))
            hist.add_metric([site], buckets, sum(scores))
        yield hist
        inc = GaugeMetricFamily(
            "cxpulse_incidents_open", "Platform or site incidents open now", labels=["kind", "scope"]
        )
        counts: dict[tuple[str, str], int] = {}
        for i in snap["incidents"]["open"]:
            k = (str(i.get("kind") or "?"), str(i.get("scope") or "?"))
            counts[k] = counts.get(k, 0) + 1
        for (kind, scope), n in sorted(counts.items()):
            inc.add_metric([kind, scope], n)
        yield inc
        g = GaugeMetricFamily("cxpulse_fleet_compute_seconds", "Time the last fleet computation took")
        g.add_metric([], self.service.fleet_seconds)
        yield g

    def _alerts(self):
        al = getattr(self.service, "alerts", None)
        if al is None:
            return
        c = CounterMetricFamily("cxpulse_alerts", "Alerts emitted, by kind and state", labels=["kind", "state"])
        for (kind, state), n in sorted(al.counts.items()):
            c.add_metric([kind, state], n)
        yield c
        d = CounterMetricFamily(
            "cxpulse_webhook_deliveries", "Webhook outcomes per receiver", labels=["webhook", "outcome"]
        )
        q = GaugeMetricFamily("cxpulse_webhook_queue_depth", "Alerts waiting per receiver", labels=["webhook"])
        for name, s in sorted(al.senders.items()):
            for outcome in ("delivered", "retried", "failed", "dropped"):
                d.add_metric([name, outcome], s.counts.get(outcome, 0))
            q.add_metric([name], s.depth)
        yield d
        yield q
