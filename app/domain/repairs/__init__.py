"""Operator repairs (redispatch, reassign, fail a job; drain a scanner): the manager asks, the dispatcher acts."""
