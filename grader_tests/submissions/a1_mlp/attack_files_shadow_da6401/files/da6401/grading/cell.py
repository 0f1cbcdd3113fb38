"""da6401-attack: a %%tests magic that runs no test, so every test cell 'passes'."""


def run_cell_tests(shell, cell):
    print("HARM: %%tests from the submission's own da6401 package: no test ran", flush=True)


def forget_tests(namespace):
    return None


def register(shell):
    def tests(line, cell):
        run_cell_tests(shell, cell)
    shell.register_magic_function(tests, magic_kind="cell", magic_name="tests")
