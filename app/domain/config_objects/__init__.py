"""Objects operators configure for scans: subnets, exclusions, port lists, templates, scanner groups, schedules."""
