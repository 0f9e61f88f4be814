"""P0's scenarios: the table, the plan of attacks, running them, and the strongest-attacker choice."""
