# The two commands of the README. Both set everything up from scratch.
.PHONY: demo test bench lock clean
demo:
	./scripts/demo
test:
	./scripts/test
bench:
	./scripts/bench
lock:
	./scripts/lock
clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache cqrs.db cqrs.db-*
