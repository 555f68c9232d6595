"""Closed-loop simulation: episodes in the synthetic world, driving-score metrics, traces."""
