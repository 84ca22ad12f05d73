"""What a run needs and what the machine has: model facts, memory available, the memory plan."""
