"""The call: events in, commands out, one CallMachine per call (DESIGN.md section 3)."""
