// The Erase Concept tab's Start button: give the run a task id and follow it with the WebUI's own progress bar
// (percentage, ETA, the engine's status line) and live preview (the loss curve), as txt2img's Generate does.
function concept_erasure_submit() {
    var id = randomId();
    requestProgress(
        id,
        gradioApp().getElementById("concept_erasure_results"),
        gradioApp().getElementById("concept_erasure_gallery"),
        function() {}
    );
    var args = Array.from(arguments);
    args[0] = id;
    return args;
}
