#!/bin/sh
# wordcount @VERSION@: counts the words of the files given (or standard input)
if [ "$1" = "--version" ]; then echo "wordcount @VERSION@"; exit 0; fi
cat "$@" | wc -w | tr -d ' '
