"""Failover drills: scenario definitions shared by the local runner and the operator."""
