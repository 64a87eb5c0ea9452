#!/bin/sh
# The tests the build stage runs: sh test.sh ./wordcount
set -e
tool=$1
[ "$(echo one two three | $tool)" = 3 ] || { echo "FAIL: three words"; exit 1; }
printf 'a b\nc\n' > /tmp/words
[ "$($tool /tmp/words)" = 3 ] || { echo "FAIL: file"; exit 1; }
$tool --version | grep -q '^wordcount [0-9]' || { echo "FAIL: version"; exit 1; }
echo "all tests passed"
