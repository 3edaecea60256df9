"""`python -m audiolora ...` runs the command line, as the `audiolora` script does."""

from audiolora.cli import app

if __name__ == "__main__":
    app(prog_name="audiolora")
