"""Jobs as the scanner sees them: claims with fencing leases, progress, completion."""
