#!/bin/sh
# The "model": squares its argument.
echo $(( $1 * $1 ))
