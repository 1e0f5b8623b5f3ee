"""Editor support for `.arch` files: a Pygments lexer (`archdsl.editor.pygments_lexer`); the
TextMate grammar for VS Code and other TextMate-based editors is editors/textmate/."""
