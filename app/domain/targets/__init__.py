"""Scan targets as interval sets of integer addresses: never one object per address."""
