"""The method: score files and empirical-loss scoring, the level-1 keep rules, the ITE, the level-2 rule and lazy
selector. It knows no upstream and no command line, and imports nothing of the runtime, the lab or the adapters."""
