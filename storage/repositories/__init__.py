"""One repository per stage; each takes a Session and never commits (the unit of work does)."""
