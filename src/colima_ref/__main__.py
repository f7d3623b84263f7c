"""``python -m colima_ref``: the same CLI as ``colima-ref``."""

from colima_ref.cli import main

if __name__ == "__main__":
    main()
