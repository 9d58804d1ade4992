# Warnings for our own targets only (never forced on consumers).
function(emissions_set_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 $<$<BOOL:${EMISSIONS_WERROR}>:/WX>)
  else()
    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
        -Woverloaded-virtual -Wconversion -Wsign-conversion
        -Wdouble-promotion -Wimplicit-fallthrough
        $<$<BOOL:${EMISSIONS_WERROR}>:-Werror>)
    # GCC 12 at -O3 reports std::string concatenation as an overlapping memcpy (GCC bug
    # 105329): a false positive that broke -Werror builds of the tests (release preset).
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
  endif()
endfunction()

