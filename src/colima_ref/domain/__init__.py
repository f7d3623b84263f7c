"""Pure logic: values, errors and the rules of the contract. No I/O, no frameworks."""
