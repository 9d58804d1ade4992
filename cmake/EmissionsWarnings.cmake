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
  endif()
endfunction()

