# depot_warnings(target): warnings are errors on our own code. Call it on every target we write;
# generated code (capnp_generate_cpp output) lives in targets that do not call it.
# -Wswitch (already in -Wall, named for intent): the exhaustive ErrorCode switches have no
# `default:`, so a new enumerant that is not handled breaks the build.
function(depot_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wswitch)
endfunction()
