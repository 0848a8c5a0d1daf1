"""Reading /metrics as Prometheus does, and comparing two scrapes."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def of(cls, base_url: str) -> Scrape:
        response = httpx.get(f"{base_url}/metrics", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for point in family.samples:
                samples[(point.name, frozenset(point.labels.items()))] = float(point.value)
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def since(self, before: Scrape, name: str, **labels: str) -> float:
        """How much a counter (or a histogram's _count/_sum) grew between the two scrapes:
        the series are process-wide, and other tests in this worker add to them too."""
        return round(self.value(name, **labels) - before.value(name, **labels), 9)
