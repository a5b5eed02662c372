"""OAIS dissemination: BagIt export of archived files, written in a child process."""
