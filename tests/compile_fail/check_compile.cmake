# cmake -DCOMPILER=... -DSTD_FLAG=... -DINCLUDE_DIR=... -DSOURCE=... [-DDEFINE=MACRO]
#       -DEXPECT=pass|fail [-DMESSAGE=regex] -P check_compile.cmake
# Compiles SOURCE (syntax only). EXPECT=pass: must compile. EXPECT=fail: must not compile,
# and the diagnostics must match MESSAGE, so that an unrelated error cannot pass for it.
set(_args ${STD_FLAG} -fsyntax-only -I${INCLUDE_DIR})
if(DEFINE)
  list(APPEND _args -D${DEFINE})
endif()
execute_process(COMMAND ${COMPILER} ${_args} ${SOURCE}
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(EXPECT STREQUAL "pass")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "expected ${SOURCE} to compile (${DEFINE}), but:\n${_out}")
  endif()
elseif(EXPECT STREQUAL "fail")
  if(_rc EQUAL 0)
    message(FATAL_ERROR "expected ${SOURCE} with ${DEFINE} not to compile, but it did")
  endif()
  if(NOT _out MATCHES "${MESSAGE}")
    message(FATAL_ERROR "${SOURCE} with ${DEFINE} failed, but without '${MESSAGE}':\n${_out}")
  endif()
else()
  message(FATAL_ERROR "EXPECT must be pass or fail (got '${EXPECT}')")
endif()
message(STATUS "ok: ${DEFINE} ${EXPECT}")
