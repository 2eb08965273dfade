# The two commands of the README, and a few helpers.
.PHONY: run test setup build release clean

# Set up and run Comet on its own managed ClickHouse (http://localhost:9090).
run: setup
	cargo run --release --locked -- serve $(ARGS)

# Set up and run the whole test suite (fmt, clippy, unit and integration tests).
test:
	scripts/test.sh

setup:
	scripts/setup.sh

build:
	cargo build --workspace --locked

release:
	cargo build --release --locked

clean:
	cargo clean
