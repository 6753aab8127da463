"""``dqnviz games``: list the games whose ROMs ale-py ships."""

HELP = "list the games whose ROMs ale-py ships (usable by name in train)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    from dqnviz.atari import shipped_roms

    names = sorted(shipped_roms())
    width = max(map(len, names)) + 2
    columns = max(1, 96 // width)
    for i in range(0, len(names), columns):
        print("".join(name.ljust(width) for name in names[i:i + columns]).rstrip())
    return 0
