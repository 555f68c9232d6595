"""
Spending limits of one annotation run: at most N HTTP requests and at most X USD.

The client asks the budget before every request (retries and repair requests count) and
reports the tokens of every reply. Past a limit, BudgetExhausted stops the run: the keyframes
finished so far stay in the journal, so rerunning the same command continues where it stopped
(each run has its own budget). Requests already in flight when a limit is reached finish and are
kept, so the cost can pass --max-cost by at most --concurrency replies.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Optional


class BudgetExhausted(RuntimeError):
    """A spending limit was reached: stop asking, keep what is done."""


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per million tokens; cost = tokens x price."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def __post_init__(self):
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError('prices must be >= 0 USD per million tokens')

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok
                + completion_tokens * self.output_per_mtok) / 1e6


class Budget:
    """Thread-safe request and cost counter with optional limits (None: no limit)."""

    def __init__(self, max_requests: Optional[int] = None, max_cost_usd: Optional[float] = None,
                 price: Price = Price()):
        if max_requests is not None and max_requests < 1:
            raise ValueError(f'max_requests must be >= 1, got {max_requests}')
        if max_cost_usd is not None and max_cost_usd <= 0:
            raise ValueError(f'max_cost must be > 0 USD, got {max_cost_usd}')
        if max_cost_usd is not None and price == Price():
            raise ValueError('max_cost needs prices (--price-input/--price-output or '
                             '--price-table): without them every request costs 0')
        self.max_requests, self.max_cost_usd, self.price = max_requests, max_cost_usd, price
        self.requests = 0
        self.cost_usd = 0.0
        self._lock = threading.Lock()

    def take_request(self) -> None:
        """Count one request about to be sent, or raise BudgetExhausted if a limit is reached."""
        with self._lock:
            if self.max_requests is not None and self.requests >= self.max_requests:
                raise BudgetExhausted(f'--max-requests {self.max_requests} reached')
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                raise BudgetExhausted(f'--max-cost {self.max_cost_usd:g} USD reached '
                                      f'(spent {self.cost_usd:.4f} USD)')
            self.requests += 1

    def spend(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Add the cost of one reply."""
        with self._lock:
            self.cost_usd += self.price.cost(prompt_tokens, completion_tokens)
