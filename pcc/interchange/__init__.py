"""Reading and writing circuits in other tools' formats (PSDD, Juice, SPFlow, cirkit)."""
