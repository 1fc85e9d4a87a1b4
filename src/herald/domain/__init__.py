"""Pure logic: no I/O, no clocks, no globals. Tested with tables."""
