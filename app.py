"""Hugging Face Space entry point: the VideoFlexTok app (flexvid/app_ui.py builds the page).

    python app.py [--port 7860] [--tokenizer FOLDER_OR_REPO_ID] [--text-generator X|none] [--class-generator X|none]

Settings: space.yaml (section `app`); FLEXVID_TOKENIZER overrides the tokenizer, FLEXVID_TEXT_GENERATOR and
FLEXVID_CLASS_GENERATOR the generators ("none" turns one off), and the options override those.
"""
import sys

from flexvid.app_ui import main

if __name__ == "__main__":
    sys.exit(main())
