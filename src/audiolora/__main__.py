"""`python -m audiolora ...` runs the command line, as the `audiolora` script does."""

from audiolora.cli import main

if __name__ == "__main__":
    main()
