"""Planning: a template becomes a run and its jobs, sized to each scanner's rate."""
