"""Events: stalls, recoveries, changes and failures an operator should see."""
